"""Which strategy serves which ``DistributedType``, and loading strategies from entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping

from accel.core.strategies.base import TrainingStrategy
from accel.state.options import option, read_setting

ENTRY_POINT_GROUP = "accel.strategies"
#: Names a strategy to use instead of the one the distributed type maps to (accel only;
#: ``accel launch --strategy NAME`` or ``strategy: NAME`` in its config file write it).
STRATEGY_ENV = option("strategy").env[0]

BUILTIN = {
    "single": "accel.core.strategies.single:SingleDeviceStrategy",
    "ddp": "accel.core.strategies.ddp:DDPStrategy",
    "fsdp": "accel.core.strategies.fsdp:FSDPStrategy",
}

_BY_DISTRIBUTED_TYPE = {
    "NO": "single",
    "FSDP": "fsdp",
    "DEEPSPEED": "deepspeed",
    "XLA": "xla",
    "MEGATRON_LM": "megatron_lm",
}

_PROVIDED_BY = {"deepspeed": "accel-deepspeed", "xla": "accel-xla"}


def _load(path: str) -> type[TrainingStrategy]:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_strategy(name: str) -> type[TrainingStrategy]:
    """The strategy class registered as ``name`` (built in, or from an installed package).

    Example:
        >>> load_strategy("ddp").__name__
        'DDPStrategy'
    """
    if name in BUILTIN:
        return _load(BUILTIN[name])
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            strategy = entry.load()
            if not (isinstance(strategy, type) and issubclass(strategy, TrainingStrategy)):
                raise TypeError(
                    f"entry point {entry.name!r} = {entry.value!r} in group "
                    f"{ENTRY_POINT_GROUP!r} must name a TrainingStrategy subclass"
                )
            return strategy
    hint = (
        f"install {_PROVIDED_BY[name]} (pip install 'accel-core[{name}]')"
        if name in _PROVIDED_BY
        else f"no installed package registers it in the entry-point group {ENTRY_POINT_GROUP!r}"
    )
    raise ValueError(f"the training strategy {name!r} is not available: {hint}")


def strategy_for(distributed_type: str) -> type[TrainingStrategy]:
    """The strategy class for a ``DistributedType`` (multi-device types use DDP).

    Example:
        >>> strategy_for("MULTI_CPU").__name__
        'DDPStrategy'
    """
    key = str(getattr(distributed_type, "value", distributed_type))
    name = _BY_DISTRIBUTED_TYPE.get(key, "ddp" if key.startswith("MULTI_") else None)
    if name is None:
        raise ValueError(f"no training strategy is known for distributed type {key!r}")
    return load_strategy(name)


def chosen_strategy(
    distributed_type: str, environ: Mapping[str, str] | None = None
) -> type[TrainingStrategy]:
    """The strategy class an ``Accelerator`` uses: the one named by ``ACCEL_STRATEGY`` (built
    in or registered by an installed package), else the one of ``distributed_type``.

    Example:
        >>> chosen_strategy("NO", environ={"ACCEL_STRATEGY": "ddp"}).__name__
        'DDPStrategy'
    """
    raw, source = read_setting("strategy", environ)
    name = (raw or "").strip()
    if not name:
        return strategy_for(distributed_type)
    try:
        return load_strategy(name)
    except ValueError as error:
        raise ValueError(f"{source}={name!r}: {error}") from None
