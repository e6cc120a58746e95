"""accel.ops: collectives on nested structures, structure helpers, and randomness.

Names are loaded on first use, so importing the package costs almost nothing beyond torch.

Example:
    >>> import torch
    >>> from accel.ops import gather, send_to_device
    >>> gather(send_to_device({"x": torch.ones(2)}, "cpu"))["x"]
    tensor([1., 1.])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accel.state.lazy import lazy_exports
from accel.state.versions import require_siblings

require_siblings("accel-ops")  # one release of accel installed, or a clear ImportError

_EXPORTS = {
    "broadcast": ".collectives",
    "broadcast_object_list": ".collectives",
    "gather": ".collectives",
    "gather_object": ".collectives",
    "pad_across_processes": ".collectives",
    "reduce": ".collectives",
    "copy_tensor_to_devices": ".single_source",
    "DistributedOperationException": ".exceptions",
    "ConvertOutputsToFp32": ".fp32_outputs",
    "TensorInformation": ".structures",
    "concatenate": ".structures",
    "convert_outputs_to_fp32": ".fp32_outputs",
    "convert_to_fp32": ".fp32_outputs",
    "find_batch_size": ".structures",
    "find_device": ".structures",
    "get_data_structure": ".structures",
    "get_shape": ".structures",
    "honor_type": ".structures",
    "ignorant_find_batch_size": ".structures",
    "initialize_tensors": ".structures",
    "is_namedtuple": ".structures",
    "is_tensor_information": ".structures",
    "is_torch_tensor": ".structures",
    "listify": ".structures",
    "recursively_apply": ".structures",
    "send_to_device": ".structures",
    "slice_tensors": ".structures",
    "set_seed": ".randomness",
    "synchronize_rng_state": ".randomness",
    "synchronize_rng_states": ".randomness",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from accel.ops.collectives import (
        broadcast,
        broadcast_object_list,
        gather,
        gather_object,
        pad_across_processes,
        reduce,
    )
    from accel.ops.exceptions import DistributedOperationException
    from accel.ops.fp32_outputs import (
        ConvertOutputsToFp32,
        convert_outputs_to_fp32,
        convert_to_fp32,
    )
    from accel.ops.randomness import set_seed, synchronize_rng_state, synchronize_rng_states
    from accel.ops.single_source import copy_tensor_to_devices
    from accel.ops.structures import (
        TensorInformation,
        concatenate,
        find_batch_size,
        find_device,
        get_data_structure,
        get_shape,
        honor_type,
        ignorant_find_batch_size,
        initialize_tensors,
        is_namedtuple,
        is_tensor_information,
        is_torch_tensor,
        listify,
        recursively_apply,
        send_to_device,
        slice_tensors,
    )
