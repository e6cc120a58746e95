"""ZeRO-3 specifics: building models already partitioned, checking how a model was built,
and gathering full weights from the partitions.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from accel.deepspeed.availability import require_deepspeed
from accel.deepspeed.config import AUTO
from accel.deepspeed.group import ensure_process_group
from accel.state import AcceleratorState
from accel.state.process_logging import library_logger


class PluginLike(Protocol):
    """What this module reads from a ``DeepSpeedPlugin`` (plugin.py builds on this module,
    so it is not imported here).

    Example:
        >>> from accel.deepspeed import DeepSpeedPlugin
        >>> plugin: PluginLike = DeepSpeedPlugin(zero_stage=3)
        >>> plugin.zero_stage
        3
    """

    @property
    def zero_stage(self) -> int | None: ...
    @property
    def sources(self) -> dict[str, str]: ...
    @property
    def deepspeed_config(self) -> dict[str, Any]: ...
    @property
    def hf_ds_config(self) -> Any: ...
    def is_zero3_init_enabled(self) -> bool: ...


logger = library_logger(__name__)


def _active_plugin() -> PluginLike:
    plugin = AcceleratorState().deepspeed_plugin if AcceleratorState.is_initialized() else None
    if plugin is None:
        raise ValueError(
            "no DeepSpeed plugin is active: create Accelerator(deepspeed_plugin=...) (or run "
            "under accel launch --use_deepspeed) before zero3_init_context(), or pass the plugin"
        )
    return plugin


def _init_config(plugin: PluginLike) -> dict[str, Any]:
    """The part of the plugin's config ``zero.Init`` reads, without ``"auto"`` values."""
    zero = {
        key: value
        for key, value in plugin.deepspeed_config.get("zero_optimization", {}).items()
        if value != AUTO
    }
    config: dict[str, Any] = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": zero}
    for dtype in ("fp16", "bf16"):
        if plugin.hf_ds_config.is_true(f"{dtype}.enabled"):
            config[dtype] = {"enabled": True}
    return config


@contextlib.contextmanager
def _transformers_zero3_disabled() -> Iterator[None]:
    # transformers' module global that makes its from_pretrained partition under ZeRO-3
    module: Any = sys.modules.get("transformers.integrations.deepspeed")
    reference = getattr(module, "_hf_deepspeed_config_weak_ref", None) if module else None
    if reference is None:
        yield
        return
    module._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        module._hf_deepspeed_config_weak_ref = reference


@contextlib.contextmanager
def zero3_init_context(plugin: PluginLike | None = None, enabled: bool = True) -> Iterator[None]:
    """Build models inside so that their parameters are created already partitioned across
    the processes (``deepspeed.zero.Init``); each process holds only its share.

    Uses the active plugin of the ``Accelerator`` unless one is given; it must ask for ZeRO
    stage 3. With ``enabled=False`` models are built whole (and ``transformers``'
    ``from_pretrained`` does not partition either).

    Example:
        >>> accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=3))  # doctest: +SKIP
        >>> with zero3_init_context():  # doctest: +SKIP
        ...     model = torch.nn.Linear(4096, 4096)
        >>> model = accelerator.prepare(model)  # doctest: +SKIP
    """
    if not enabled:
        with _transformers_zero3_disabled():
            yield
        return
    plugin = plugin if plugin is not None else _active_plugin()
    if plugin.zero_stage != 3:
        raise ValueError(
            f"zero3_init_context() needs ZeRO stage 3, but the plugin's zero_stage is "
            f"{plugin.zero_stage} ({plugin.sources.get('zero_stage', 'DeepSpeedPlugin')})"
        )
    deepspeed = require_deepspeed()
    ensure_process_group()
    # No dtype argument: DeepSpeed 0.19 then takes it from the config (fp32 unless fp16/bf16
    # is enabled); an explicit dtype is ignored on CPU, where it picks bf16.
    with deepspeed.zero.Init(config_dict_or_path=_init_config(plugin)):
        yield


def is_partitioned(parameter: torch.nn.Parameter) -> bool:
    """Whether ``parameter`` was created by ``deepspeed.zero.Init`` (ZeRO-3 partitioned).

    Example:
        >>> is_partitioned(torch.nn.Parameter(torch.zeros(1)))
        False
    """
    return hasattr(parameter, "ds_id")


def check_model_partitioning(model: torch.nn.Module, plugin: PluginLike) -> None:
    """Refuse models whose construction does not fit the plugin's ZeRO stage.

    A model built inside ``zero3_init_context`` only works with ZeRO stage 3; a model built
    partly inside it cannot be trained at all. With ``zero3_init_flag`` set, a model built
    whole is accepted (DeepSpeed partitions it when the engine is created, after holding it
    whole once on every process), with a warning.

    Example:
        >>> from accel.deepspeed import DeepSpeedPlugin
        >>> check_model_partitioning(torch.nn.Linear(2, 2), DeepSpeedPlugin(zero_stage=2))
    """
    names = [(name, is_partitioned(p)) for name, p in model.named_parameters()]
    done = [name for name, flag in names if flag]
    if not done:
        if plugin.is_zero3_init_enabled():
            logger.warning(
                "zero3_init_flag is set (%s) but %s was built outside zero3_init_context(): "
                "every process held the whole model before DeepSpeed partitioned it",
                plugin.sources.get("zero3_init_flag", "DeepSpeedPlugin"),
                type(model).__name__,
            )
        return
    stage_source = plugin.sources.get("zero_stage", "DeepSpeedPlugin")
    if plugin.zero_stage != 3:
        raise ValueError(
            f"{type(model).__name__} was built inside zero3_init_context() (its parameters are "
            f"partitioned, e.g. {done[0]!r}) but zero_stage is {plugin.zero_stage} "
            f"({stage_source}); use ZeRO stage 3, or build the model outside the context"
        )
    whole = [name for name, flag in names if not flag]
    if whole:
        raise ValueError(
            f"{type(model).__name__} was built partly inside zero3_init_context(): "
            f"{len(whole)} parameters are whole (e.g. {whole[:3]}) while {len(done)} are "
            "partitioned; build the entire model inside the context, or entirely outside it"
        )


def gathered_state_dict(engine: Any) -> dict[str, torch.Tensor] | None:
    """The full state dict of a ZeRO-3 engine's model on the main process (``None`` on the
    others), gathered one layer at a time. Every process must call it.

    Example:
        >>> state = gathered_state_dict(engine)  # doctest: +SKIP
    """
    return engine._zero3_consolidated_16bit_state_dict()


def set_moe_leaf_modules(model: torch.nn.Module, class_names: str, source: str = "") -> None:
    """Mark the modules whose class name is in ``class_names`` (comma-separated) as ZeRO-3 leaf
    modules, so DeepSpeed gathers each one's parameters at once (needed by MoE layers).

    Example:
        >>> set_moe_leaf_modules(model, "MixtralSparseMoeBlock")  # doctest: +SKIP
    """
    wanted = [name.strip() for name in class_names.split(",") if name.strip()]
    found = {type(m).__name__: type(m) for m in model.modules() if type(m).__name__ in wanted}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ValueError(
            f"transformer_moe_cls_names={class_names!r}{f' ({source})' if source else ''}: "
            f"{type(model).__name__} has no module of class {missing}"
        )
    from deepspeed.utils import set_z3_leaf_modules

    set_z3_leaf_modules(model, list(found.values()))
