"""Sending a tensor that exists on one process only to every process.

Example:
    >>> import torch
    >>> from accel.ops.single_source import copy_tensor_to_devices
    >>> copy_tensor_to_devices(torch.arange(3))  # one process: returned as it is
    tensor([0, 1, 2])
"""

from __future__ import annotations

import torch

from accel.ops.collectives import broadcast, gather
from accel.state import PartialState

_DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.complex128,
)


def copy_tensor_to_devices(tensor: torch.Tensor | None = None) -> torch.Tensor:
    """The tensor held by exactly one process, on every process's device. The others pass
    ``None`` and need not know its shape or dtype. Every process must call it.

    Zero or several holders raise ``ValueError`` on every process naming the holders
    (Accelerate sums the tensors of several holders; accel refuses).

    Example:
        >>> import torch
        >>> held = torch.ones(2) if PartialState().is_main_process else None
        >>> copy_tensor_to_devices(held)  # every process gets tensor([1., 1.])
        tensor([1., 1.])
    """
    state = PartialState()
    if tensor is not None and not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"copy_tensor_to_devices expects a tensor or None, got {type(tensor).__name__}"
        )
    if tensor is not None and tensor.dtype not in _DTYPES:
        raise ValueError(f"copy_tensor_to_devices: dtype {tensor.dtype} is not supported")
    if not state.use_distributed:
        if tensor is None:
            raise ValueError("copy_tensor_to_devices: no process holds a tensor (all passed None)")
        return tensor.to(state.device)
    held = torch.tensor([tensor is not None], dtype=torch.int64, device=state.device)
    holders = [i for i, flag in enumerate(gather(held).tolist()) if flag]
    if len(holders) != 1:
        raise ValueError(
            f"copy_tensor_to_devices needs exactly one process holding a tensor; "
            f"holders: {holders or 'none'}"
        )
    source = holders[0]
    is_source = tensor is not None  # the one holder, checked above
    header = torch.zeros(2, dtype=torch.int64, device=state.device)
    if is_source:
        header[0], header[1] = tensor.dim(), _DTYPES.index(tensor.dtype)
    ndim, dtype_index = broadcast(header, from_process=source).tolist()
    shape = torch.zeros(ndim, dtype=torch.int64, device=state.device)
    if is_source:
        shape.copy_(torch.tensor(tensor.shape, dtype=torch.int64))
    shape = broadcast(shape, from_process=source).tolist()
    if is_source:
        payload = tensor.to(state.device).contiguous()
    else:
        payload = torch.empty(shape, dtype=_DTYPES[dtype_index], device=state.device)
    return broadcast(payload, from_process=source)
