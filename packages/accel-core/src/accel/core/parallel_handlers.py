"""Handlers of the tensor and context parallel dimensions of a ``ParallelismConfig``, and
Accelerate's older ``TorchTensorParallelPlugin`` (mapped onto ``ParallelismConfig(tp_size=...)``).

Example:
    >>> from accel.core.parallel_handlers import TorchTensorParallelConfig
    >>> TorchTensorParallelConfig(tp_plan={"fc1": "colwise", "fc2": "rowwise"}).tp_plan["fc1"]
    'colwise'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accel.state.options import CP_COMM_STRATEGIES, read_setting


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
