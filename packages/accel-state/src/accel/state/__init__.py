"""accel.state: process and device state, enums, and the launcher's environment protocol.

Names are loaded on first use, so ``import accel.state.env`` (the launcher's path) does not
import torch.

Example:
    >>> from accel.state import PartialState
    >>> PartialState().is_main_process
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accel.state.lazy import lazy_exports

_EXPORTS = {
    "PartialState": ".partial_state",
    "AcceleratorState": ".accelerator_state",
    "GradientState": ".gradient_state",
    "reset_state": ".reset",
    "split_for_process": ".splitting",
    "ComputeEnvironment": ".enums",
    "CustomDtype": ".enums",
    "DistributedType": ".enums",
    "DynamoBackend": ".enums",
    "LoggerType": ".enums",
    "PrecisionType": ".enums",
    "RNGType": ".enums",
    "SageMakerDistributedType": ".enums",
    "KwargsHandler": ".kwargs",
    "InitProcessGroupKwargs": ".kwargs",
    "patch_environment": ".environment",
    "clear_environment": ".environment",
    "CollectiveBackend": ".backends",
    "registered_backends": ".backends",
    "is_bf16_available": ".availability",
    "is_cuda_available": ".availability",
    "is_datasets_available": ".availability",
    "is_deepspeed_available": ".availability",
    "is_ipex_available": ".availability",
    "is_mps_available": ".availability",
    "is_npu_available": ".availability",
    "is_package_available": ".availability",
    "is_safetensors_available": ".availability",
    "is_torch_version": ".availability",
    "is_torch_xla_available": ".availability",
    "is_tpu_available": ".availability",
    "is_transformers_available": ".availability",
    "is_xpu_available": ".availability",
    "detect_device_type": ".devices",
    "DistributedOperationException": ".operation_check",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from accel.state.accelerator_state import AcceleratorState
    from accel.state.availability import (
        is_bf16_available,
        is_cuda_available,
        is_datasets_available,
        is_deepspeed_available,
        is_ipex_available,
        is_mps_available,
        is_npu_available,
        is_package_available,
        is_safetensors_available,
        is_torch_version,
        is_torch_xla_available,
        is_tpu_available,
        is_transformers_available,
        is_xpu_available,
    )
    from accel.state.backends import CollectiveBackend, registered_backends
    from accel.state.devices import detect_device_type
    from accel.state.enums import (
        ComputeEnvironment,
        CustomDtype,
        DistributedType,
        DynamoBackend,
        LoggerType,
        PrecisionType,
        RNGType,
        SageMakerDistributedType,
    )
    from accel.state.environment import clear_environment, patch_environment
    from accel.state.gradient_state import GradientState
    from accel.state.kwargs import InitProcessGroupKwargs, KwargsHandler
    from accel.state.operation_check import DistributedOperationException
    from accel.state.partial_state import PartialState
    from accel.state.reset import reset_state
    from accel.state.splitting import split_for_process
