"""Dtype names and element sizes, shared by size estimates and tensor placement.

Example:
    >>> as_dtype("float16"), dtype_byte_size(torch.bfloat16)
    (torch.float16, 2)
"""

from __future__ import annotations

import re
from typing import overload

import torch

from accel.state.enums import CustomDtype

__all__ = ["as_dtype", "dtype_byte_size", "keeps_own_dtype"]

_SUB_BYTE = {
    torch.bool: 1 / 8,
    CustomDtype.INT2: 1 / 4,
    CustomDtype.INT4: 1 / 2,
    CustomDtype.FP8: 1,
}


@overload
def as_dtype(dtype: str | torch.dtype) -> torch.dtype: ...
@overload
def as_dtype(dtype: CustomDtype) -> CustomDtype: ...
def as_dtype(dtype: str | torch.dtype | CustomDtype) -> torch.dtype | CustomDtype:
    """``dtype`` as a torch dtype when given by name (``"float16"``, ``"torch.float16"``).

    Example:
        >>> as_dtype("torch.bfloat16"), as_dtype(torch.int8)
        (torch.bfloat16, torch.int8)
    """
    if isinstance(dtype, str):
        name = dtype.replace("torch.", "")
        resolved = getattr(torch, name, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype {dtype!r} does not name a torch dtype (e.g. 'float16')")
        return resolved
    return dtype


def keeps_own_dtype(dtype: torch.dtype) -> bool:
    """Whether tensors of ``dtype`` keep it when weights are loaded with another dtype
    (integer and boolean tensors are never cast).

    Example:
        >>> keeps_own_dtype(torch.int64), keeps_own_dtype(torch.float32)
        (True, False)
    """
    return str(dtype).startswith(("torch.uint", "torch.int", "torch.bool"))


def dtype_byte_size(dtype: torch.dtype | CustomDtype) -> float:
    """Bytes one element of ``dtype`` occupies (a fraction for sub-byte types).

    Handles ``torch.bool`` (1/8, as weights are counted when packed), the float8 types, and
    :class:`accel.state.enums.CustomDtype` ``INT4`` (1/2), ``INT2`` (1/4) and ``FP8`` (1).

    Example:
        >>> dtype_byte_size(torch.float32)
        4
        >>> dtype_byte_size(CustomDtype.INT4)
        0.5
    """
    if dtype in _SUB_BYTE:
        return _SUB_BYTE[dtype]
    if isinstance(dtype, torch.dtype) and "float8" in str(dtype):
        return 1
    bits = re.search(r"[^\d](\d+)$", str(dtype))
    if bits is None:
        raise ValueError(f"dtype {dtype!r} is not a dtype with a known size")
    n_bits = int(bits.group(1))
    return n_bits // 8 if n_bits >= 8 else n_bits / 8
