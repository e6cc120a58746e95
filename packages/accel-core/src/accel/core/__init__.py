"""accel.core: the ``Accelerator`` and everything a training script needs, in one import.

Names load on first use, so importing the package is cheap.

Example:
    >>> from accel.core import Accelerator, set_seed
    >>> set_seed(0)
    >>> accelerator = Accelerator()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Accelerator": "accel.core.accelerator",
    "AcceleratedOptimizer": "accel.core.optimizer",
    "AcceleratedScheduler": "accel.core.scheduler",
    "TrainingStrategy": "accel.core.strategies",
    "AutocastKwargs": "accel.core.kwargs",
    "DistributedDataParallelKwargs": "accel.core.kwargs",
    "DDPCommunicationHookType": "accel.core.kwargs",
    "FP8RecipeKwargs": "accel.core.kwargs",
    "GradScalerKwargs": "accel.core.kwargs",
    "InitProcessGroupKwargs": "accel.state",
    "DataLoaderConfiguration": "accel.core.plugins",
    "FullyShardedDataParallelPlugin": "accel.core.plugins",
    "GradientAccumulationPlugin": "accel.core.plugins",
    "ProjectConfiguration": "accel.core.plugins",
    "TorchDynamoPlugin": "accel.core.plugins",
    "notebook_launcher": "accel.launch",
    "debug_launcher": "accel.launch",
    "prepare_data_loader": "accel.core.data",
    "skip_first_batches": "accel.core.data",
    "PartialState": "accel.state",
    "AcceleratorState": "accel.state",
    "GradientState": "accel.state",
    "DistributedType": "accel.state",
    "PrecisionType": "accel.state",
    "RNGType": "accel.state",
    "DynamoBackend": "accel.state",
    "LoggerType": "accel.state",
    "reset_state": "accel.state",
    "patch_environment": "accel.state",
    "is_torch_version": "accel.state",
    "gather": "accel.ops",
    "gather_object": "accel.ops",
    "reduce": "accel.ops",
    "broadcast": "accel.ops",
    "broadcast_object_list": "accel.ops",
    "pad_across_processes": "accel.ops",
    "send_to_device": "accel.ops",
    "set_seed": "accel.ops",
    "synchronize_rng_states": "accel.ops",
    "DistributedOperationException": "accel.ops",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'accel.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
