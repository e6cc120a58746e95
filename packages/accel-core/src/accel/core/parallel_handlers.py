"""Handlers of the tensor, context and sequence parallel dimensions of a
``ParallelismConfig``, and Accelerate's older ``TorchTensorParallelPlugin`` (mapped onto ``ParallelismConfig(tp_size=...)``).

Example:
    >>> from accel.core.parallel_handlers import TorchTensorParallelConfig
    >>> TorchTensorParallelConfig(tp_plan={"fc1": "colwise", "fc2": "rowwise"}).tp_plan["fc1"]
    'colwise'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accel.state.options import CP_COMM_STRATEGIES, option, read_setting


@dataclass
class TorchTensorParallelConfig:
    """How the ``tp`` dimension splits the model.

    ``tp_plan`` (beyond Accelerate) maps module names (``*`` matches one name part, e.g.
    ``"layers.*.mlp.up_proj"``) to a style: ``"colwise"``, ``"rowwise"``,
    ``"colwise_rep"``/``"colwise_gather_output"``, ``"embedding_rowwise"``,
    ``"sequence_parallel"`` or a ``torch.distributed.tensor.parallel`` style object. Without
    it the model's own plan is used (transformers' ``tp_plan`` / ``base_model_tp_plan``).
    ``enable_async_tp`` must stay ``False``: accel does not implement async TP.

    Example:
        >>> TorchTensorParallelConfig().tp_plan is None
        True
    """

    enable_async_tp: bool = False
    tp_plan: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.enable_async_tp:
            raise ValueError(
                "TorchTensorParallelConfig(enable_async_tp=True): async tensor parallelism is "
                "not implemented in accel (Accelerate ignores it with a warning); leave it False"
            )
        if self.tp_plan is not None and not isinstance(self.tp_plan, dict):
            raise TypeError(
                "TorchTensorParallelConfig(tp_plan=...) must be a dict {module_name: style}, got "
                f"{type(self.tp_plan).__name__}"
            )


@dataclass
class TorchContextParallelConfig:
    """How the ``cp`` dimension exchanges keys/values in ring attention: ``"allgather"``
    (default, or ``PARALLELISM_CONFIG_CP_COMM_STRATEGY``) or ``"alltoall"``.

    Example:
        >>> TorchContextParallelConfig().cp_comm_strategy
        'allgather'
    """

    cp_comm_strategy: str | None = None

    def __post_init__(self) -> None:
        source = "argument"
        if self.cp_comm_strategy is None:
            value, key = read_setting("parallelism_config_cp_comm_strategy")
            if key is None:
                self.cp_comm_strategy = "allgather"
            else:
                self.cp_comm_strategy, source = value, f"environment variable {key}"
        if self.cp_comm_strategy not in CP_COMM_STRATEGIES:
            raise ValueError(
                f"TorchContextParallelConfig.cp_comm_strategy={self.cp_comm_strategy!r} (from "
                f"{source}) is not valid; expected one of {', '.join(CP_COMM_STRATEGIES)}"
            )


_SP_ATTENTION = ("flash_attention_2", "flash_attention_3", "sdpa")


def _sp_setting(name: str) -> tuple[Any, str | None]:
    """``parallelism_config_<name>`` from the environment, parsed (``"None"``, which
    ``accelerate launch`` writes for an unset value, is ``None``), and its variable."""
    entry = option("parallelism_config_" + name)
    raw, key = read_setting(entry.name)
    if key is None or raw is None or raw == "None":
        return None, key
    return entry.parse(raw, f"environment variable {key}"), key


@dataclass
class DeepSpeedSequenceParallelConfig:
    """How DeepSpeed's Ulysses sequence parallelism (ALST) runs when ``sp_size > 1``.

    ``sp_seq_length_is_variable`` (default ``True``, or ``PARALLELISM_CONFIG_SP_SEQ_LENGTH_IS_
    VARIABLE``): batches may differ in sequence length; when ``False``, ``sp_seq_length`` (or
    ``PARALLELISM_CONFIG_SP_SEQ_LENGTH``) is every batch's length. ``sp_attn_implementation``
    (or ``PARALLELISM_CONFIG_SP_ATTN_IMPLEMENTATION``): the transformers attention Ulysses
    wraps, ``"sdpa"``, ``"flash_attention_2"``, ``"flash_attention_3"`` or a hub flash-attention
    kernel; unset, the model's own ``config._attn_implementation`` is used.

    Example:
        >>> DeepSpeedSequenceParallelConfig(sp_attn_implementation="sdpa").sp_seq_length_is_variable
        True
        >>> DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=False)
        Traceback (most recent call last):
        ...
        ValueError: DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=False) needs sp_seq_length (the length of every batch), as an argument or PARALLELISM_CONFIG_SP_SEQ_LENGTH
    """

    sp_seq_length: int | None = None
    sp_seq_length_is_variable: bool | None = None
    sp_attn_implementation: str | None = None

    def __post_init__(self) -> None:
        if self.sp_seq_length_is_variable is None:
            value, _ = _sp_setting("sp_seq_length_is_variable")
            self.sp_seq_length_is_variable = True if value is None else value
        if self.sp_seq_length is None:
            self.sp_seq_length, _ = _sp_setting("sp_seq_length")
        if not self.sp_seq_length_is_variable and self.sp_seq_length is None:
            raise ValueError(
                "DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=False) needs "
                "sp_seq_length (the length of every batch), as an argument or "
                "PARALLELISM_CONFIG_SP_SEQ_LENGTH"
            )
        length = self.sp_seq_length
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise ValueError(
                f"DeepSpeedSequenceParallelConfig.sp_seq_length={length!r} must be an integer "
                ">= 1 (or None)"
            )
        if length is not None and length < 1:
            raise ValueError(
                f"DeepSpeedSequenceParallelConfig.sp_seq_length={length!r} must be >= 1"
            )
        source = "argument"
        if self.sp_attn_implementation is None:
            self.sp_attn_implementation, key = _sp_setting("sp_attn_implementation")
            source = f"environment variable {key}"
        attention = self.sp_attn_implementation
        if attention is None:
            return
        if attention in ("eager", "flex_attention"):
            raise ValueError(
                f"DeepSpeedSequenceParallelConfig.sp_attn_implementation={attention!r} (from "
                f"{source}) cannot run under sequence parallelism; use one of "
                f"{', '.join(_SP_ATTENTION)} or a hub flash-attention kernel"
            )
        if attention not in _SP_ATTENTION and not ("/" in attention and "flash-attn" in attention):
            raise ValueError(
                f"DeepSpeedSequenceParallelConfig.sp_attn_implementation={attention!r} (from "
                f"{source}) is not valid; expected one of {', '.join(_SP_ATTENTION)} or a hub "
                "flash-attention kernel such as 'kernels-community/flash-attn2'"
            )


@dataclass
class TorchTensorParallelPlugin:
    """Accelerate's older way to ask for tensor parallelism: ``Accelerator(torch_tp_plugin=
    TorchTensorParallelPlugin(tp_size=2))`` is ``parallelism_config=ParallelismConfig(
    tp_size=2)``; the built mesh is stored in ``torch_device_mesh``.

    Example:
        >>> TorchTensorParallelPlugin(tp_size=2).tp_size
        2
    """

    tp_size: int = 1
    torch_device_mesh: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.tp_size, bool) or not isinstance(self.tp_size, int) or self.tp_size < 1:
            raise ValueError(
                f"TorchTensorParallelPlugin.tp_size={self.tp_size!r} must be an integer >= 1"
            )
