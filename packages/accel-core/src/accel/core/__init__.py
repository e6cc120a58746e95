"""accel.core: the ``Accelerator`` and everything a training script needs, in one import.

Names load on first use, so importing the package is cheap.

Example:
    >>> from accel.core import Accelerator, set_seed
    >>> set_seed(0)
    >>> accelerator = Accelerator()  # doctest: +SKIP
"""

from __future__ import annotations

from accel.state.lazy import lazy_exports
from accel.state.versions import require_siblings

require_siblings("accel-core")  # one release of accel installed, or a clear ImportError

_EXPORTS = {
    "Accelerator": ".accelerator",
    "AcceleratedOptimizer": ".optimizer",
    "AcceleratedScheduler": ".scheduler",
    "TrainingStrategy": ".strategies",
    "AutocastKwargs": ".kwargs",
    "DistributedDataParallelKwargs": ".kwargs",
    "DDPCommunicationHookType": ".kwargs",
    "FP8RecipeKwargs": ".kwargs",
    "GradScalerKwargs": ".kwargs",
    "InitProcessGroupKwargs": "accel.state",
    "DataLoaderConfiguration": ".plugins",
    "FullyShardedDataParallelPlugin": ".strategies.fsdp_plugin",
    "GradientAccumulationPlugin": ".plugins",
    "ProjectConfiguration": ".plugins",
    "TorchDynamoPlugin": ".plugins",
    "notebook_launcher": "accel.launch",
    "debug_launcher": "accel.launch",
    "prepare_data_loader": ".data",
    "skip_first_batches": ".data",
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
    "save": ".saving",
    "WEIGHTS_NAME": ".saving",
    "WEIGHTS_INDEX_NAME": ".saving",
    "SAFE_WEIGHTS_NAME": ".saving",
    "SAFE_WEIGHTS_INDEX_NAME": ".saving",
    "GeneralTracker": ".tracking",
    "CheckpointWriteError": ".checkpoint.async_writer",
    "CorruptCheckpointError": ".checkpoint.errors",
    "UnsafeCheckpointError": ".checkpoint.errors",
    "find_executable_batch_size": ".memory",
    "release_memory": ".memory",
    "clear_device_cache": ".memory",
    "extract_model_from_parallel": ".model_unwrap",
    "is_peft_model": ".model_unwrap",
    "get_module_class_from_name": ".model_unwrap",
    "get_logger": ".process_logging",
    "MultiProcessAdapter": ".process_logging",
    "tqdm": ".progress",
    "ParallelismConfig": ".parallelism_config",
    "TorchTensorParallelConfig": ".parallel_handlers",
    "TorchContextParallelConfig": ".parallel_handlers",
    "DeepSpeedSequenceParallelConfig": ".parallel_handlers",
    "model_has_dtensor": ".tensor_parallel",
    "get_model_tp_size": ".tensor_parallel",
    "TorchTensorParallelPlugin": ".parallel_handlers",
    "save_fsdp_model": ".checkpoint.fsdp",
    "load_fsdp_model": ".checkpoint.fsdp",
    "save_fsdp_optimizer": ".checkpoint.fsdp",
    "load_fsdp_optimizer": ".checkpoint.fsdp",
    "get_parameters_from_modules": ".checkpoint.fsdp",
    "FSDP_AUTO_WRAP_POLICY": ".checkpoint.fsdp",
    "FSDP_SHARDING_STRATEGY": ".checkpoint.fsdp",
    "FSDP_BACKWARD_PREFETCH": ".checkpoint.fsdp",
    "FSDP_STATE_DICT_TYPE": ".checkpoint.fsdp",
    "FSDP2_STATE_DICT_TYPE": ".checkpoint.fsdp",
    "MODEL_NAME": ".checkpoint.layout",
    "SAFE_MODEL_NAME": ".checkpoint.layout",
    "FSDP_MODEL_NAME": ".checkpoint.layout",
    "OPTIMIZER_NAME": ".checkpoint.layout",
    "SCHEDULER_NAME": ".checkpoint.layout",
    "SCALER_NAME": ".checkpoint.layout",
    "RNG_STATE_NAME": ".checkpoint.layout",
    "wait_for_everyone": "accel.state",
    "is_compiled_module": ".model_unwrap",
    "load": ".saving",
    "WEIGHTS_PATTERN_NAME": ".saving",
    "SAFE_WEIGHTS_PATTERN_NAME": ".saving",
    "SAMPLER_NAME": ".checkpoint.layout",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
