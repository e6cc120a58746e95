"""accel.big_model: models larger than one device — empty-weight init, device maps, offload,
sharded checkpoint IO.

Works on its own (``pip install accel-big-model``). Names load on first use.

Example:
    >>> import torch
    >>> from accel.big_model import init_empty_weights, compute_module_sizes
    >>> with init_empty_weights():
    ...     model = torch.nn.Linear(1024, 1024)
    >>> compute_module_sizes(model)[""]
    4198400
"""

from __future__ import annotations

from accel.state.lazy import lazy_exports
from accel.state.versions import require_siblings

require_siblings("accel-big-model")  # one release of accel installed, or a clear ImportError

_EXPORTS = {
    "has_offloaded_params": ".module_utils",
    "align_module_device": ".module_utils",
    "id_tensor_storage": ".module_utils",
    "clean_state_dict_for_safetensors": ".module_utils",
    "get_module_children_bottom_up": ".module_utils",
    "check_tied_parameters_in_config": ".module_utils",
    "init_empty_weights": ".init",
    "init_on_device": ".init",
    "convert_file_size_to_int": ".sizes",
    "format_size": ".sizes",
    "dtype_byte_size": ".dtypes",
    "compute_module_sizes": ".sizes",
    "compute_module_total_buffer_size": ".sizes",
    "get_max_layer_size": ".sizes",
    "calculate_maximum_sizes": ".sizes",
    "get_max_memory": ".sizes",
    "find_tied_parameters": ".tied",
    "retie_parameters": ".tied",
    "check_tied_parameters_on_same_device": ".tied",
    "get_non_persistent_buffers": ".tensors",
    "named_module_tensors": ".tensors",
    "set_module_tensor_to_device": ".tensors",
    "device_for": ".device_lookup",
    "clean_device_map": ".auto_device_map",
    "fallback_allocate": ".auto_device_map",
    "infer_auto_device_map": ".auto_device_map",
    "get_balanced_memory": ".balanced_memory",
    "check_device_map": ".device_map_checks",
    "check_device_values": ".device_map_checks",
    "resolve_device_map": ".device_map",
    "format_device_map": ".device_map",
    "WEIGHTS_NAME": ".checkpoint",
    "WEIGHTS_INDEX_NAME": ".checkpoint",
    "SAFE_WEIGHTS_NAME": ".checkpoint",
    "SAFE_WEIGHTS_INDEX_NAME": ".checkpoint",
    "CheckpointError": ".checkpoint",
    "read_checkpoint_index": ".checkpoint",
    "load_state_dict": ".checkpoint",
    "dedupe_shared_tensors": ".checkpoint",
    "checkpoint_files": ".checkpoint",
    "load_checkpoint_in_model": ".checkpoint",
    "shard_checkpoint": ".checkpoint",
    "save_sharded_safetensors": ".checkpoint",
    "write_sharded_checkpoint": ".checkpoint",
    "INDEX_NAME": ".offload",
    "check_weight_name": ".offload",
    "offload_weight": ".offload",
    "load_offloaded_weight": ".offload",
    "save_offload_index": ".offload",
    "read_offload_index": ".offload",
    "offload_state_dict": ".offload",
    "load_offloaded_weights": ".offload",
    "PrefixedDataset": ".offload",
    "OffloadedWeightsLoader": ".offload",
    "extract_submodules_state_dict": ".offload",
    "ModelHook": ".hooks",
    "hook_of": ".hooks",
    "HookSettings": ".hook_attach",
    "SequentialHook": ".hooks",
    "add_hook_to_module": ".hooks",
    "remove_hook_from_module": ".hooks",
    "remove_hook_from_submodules": ".hooks",
    "AlignDevicesHook": ".align_hook",
    "attach_execution_device_hook": ".hook_attach",
    "attach_align_device_hook": ".hook_attach",
    "attach_align_device_hook_on_blocks": ".hook_attach",
    "align_device_hooks": ".align_hook",
    "CpuOffload": ".cpu_offload_hooks",
    "UserCpuOffloadHook": ".cpu_offload_hooks",
    "cleanup_offload": ".offload_resources",
    "align_device_hooks_of": ".align_hook",
    "dispatch_model": ".dispatch",
    "cpu_offload": ".whole_model_offload",
    "cpu_offload_with_hook": ".whole_model_offload",
    "disk_offload": ".whole_model_offload",
    "load_checkpoint_and_dispatch": ".dispatch",
    "BnbQuantizationConfig": ".quant_config",
    "load_and_quantize_model": ".quantization",
    "replace_with_bnb_layers": ".quantization",
    "get_keys_to_not_convert": ".quantization",
    "has_4bit_bnb_layers": ".quantization",
    "is_bnb_available": ".quantization",
    "WeightOnlyLinear": ".weight_only",
    "estimate_memory": ".estimate",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
