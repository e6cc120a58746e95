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
    "is_4bit_bnb_available": ".optional_packages",
    "is_8bit_bnb_available": ".optional_packages",
    "is_aim_available": ".optional_packages",
    "is_amdsmi_available": ".optional_packages",
    "is_bitsandbytes_multi_backend_available": ".optional_packages",
    "is_boto3_available": ".optional_packages",
    "is_clearml_available": ".optional_packages",
    "is_comet_ml_available": ".optional_packages",
    "is_dvclive_available": ".optional_packages",
    "is_import_timer_available": ".optional_packages",
    "is_lomo_available": ".optional_packages",
    "is_matplotlib_available": ".optional_packages",
    "is_megatron_lm_available": ".optional_packages",
    "is_mlflow_available": ".optional_packages",
    "is_msamp_available": ".optional_packages",
    "is_pandas_available": ".optional_packages",
    "is_peft_available": ".optional_packages",
    "is_pynvml_available": ".optional_packages",
    "is_pytest_available": ".optional_packages",
    "is_rich_available": ".optional_packages",
    "is_sagemaker_available": ".optional_packages",
    "is_schedulefree_available": ".optional_packages",
    "is_swanlab_available": ".optional_packages",
    "is_tensorboard_available": ".optional_packages",
    "is_timm_available": ".optional_packages",
    "is_torchao_available": ".optional_packages",
    "is_torchdata_available": ".optional_packages",
    "is_torchdata_stateful_dataloader_available": ".optional_packages",
    "is_torchvision_available": ".optional_packages",
    "is_trackio_available": ".optional_packages",
    "is_transformer_engine_available": ".optional_packages",
    "is_transformer_engine_mxfp8_available": ".optional_packages",
    "is_triton_available": ".optional_packages",
    "is_wandb_available": ".optional_packages",
    "is_fp16_available": ".device_availability",
    "is_fp8_available": ".device_availability",
    "is_habana_gaudi1": ".device_availability",
    "is_hpu_available": ".device_availability",
    "is_mlu_available": ".device_availability",
    "is_musa_available": ".device_availability",
    "is_neuron_available": ".device_availability",
    "is_pippy_available": ".device_availability",
    "is_rocm_available": ".device_availability",
    "is_sdaa_available": ".device_availability",
    "is_weights_only_available": ".device_availability",
    "is_xccl_available": ".device_availability",
    "are_libraries_initialized": ".env_reading",
    "convert_dict_to_env_variables": ".env_reading",
    "get_int_from_env": ".env_reading",
    "parse_choice_from_env": ".env_reading",
    "parse_flag_from_env": ".env_reading",
    "purge_accelerate_environment": ".env_reading",
    "wait_for_everyone": ".barrier",
    "get_pretty_name": ".general",
    "merge_dicts": ".general",
    "recursive_getattr": ".general",
    "is_port_in_use": ".general",
    "convert_bytes": ".general",
    "get_current_device_type": ".device_availability",
    "str_to_bool": ".env",
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
    from accel.state.barrier import (
        wait_for_everyone,
    )
    from accel.state.device_availability import (
        get_current_device_type,
        is_fp8_available,
        is_fp16_available,
        is_habana_gaudi1,
        is_hpu_available,
        is_mlu_available,
        is_musa_available,
        is_neuron_available,
        is_pippy_available,
        is_rocm_available,
        is_sdaa_available,
        is_weights_only_available,
        is_xccl_available,
    )
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
    from accel.state.env import (
        str_to_bool,
    )
    from accel.state.env_reading import (
        are_libraries_initialized,
        convert_dict_to_env_variables,
        get_int_from_env,
        parse_choice_from_env,
        parse_flag_from_env,
        purge_accelerate_environment,
    )
    from accel.state.environment import clear_environment, patch_environment
    from accel.state.general import (
        convert_bytes,
        get_pretty_name,
        is_port_in_use,
        merge_dicts,
        recursive_getattr,
    )
    from accel.state.gradient_state import GradientState
    from accel.state.kwargs import InitProcessGroupKwargs, KwargsHandler
    from accel.state.operation_check import DistributedOperationException
    from accel.state.optional_packages import (
        is_4bit_bnb_available,
        is_8bit_bnb_available,
        is_aim_available,
        is_amdsmi_available,
        is_bitsandbytes_multi_backend_available,
        is_boto3_available,
        is_clearml_available,
        is_comet_ml_available,
        is_dvclive_available,
        is_import_timer_available,
        is_lomo_available,
        is_matplotlib_available,
        is_megatron_lm_available,
        is_mlflow_available,
        is_msamp_available,
        is_pandas_available,
        is_peft_available,
        is_pynvml_available,
        is_pytest_available,
        is_rich_available,
        is_sagemaker_available,
        is_schedulefree_available,
        is_swanlab_available,
        is_tensorboard_available,
        is_timm_available,
        is_torchao_available,
        is_torchdata_available,
        is_torchdata_stateful_dataloader_available,
        is_torchvision_available,
        is_trackio_available,
        is_transformer_engine_available,
        is_transformer_engine_mxfp8_available,
        is_triton_available,
        is_wandb_available,
    )
    from accel.state.partial_state import PartialState
    from accel.state.reset import reset_state
    from accel.state.splitting import split_for_process
