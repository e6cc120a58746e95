"""A 62-bit fingerprint of a list of tensors' dtypes and shapes, equal across processes.

``gather`` and ``pad_across_processes`` compare it across processes before moving data
(see :mod:`accel.ops.shape_check`).

Example:
    >>> import torch
    >>> layout_fingerprint([torch.ones(2)]) == layout_fingerprint([torch.zeros(2)])
    True
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

_MASK = (1 << 62) - 1
_DTYPE_CODES: dict[torch.dtype, int] = {}


def _dtype_code(dtype: torch.dtype) -> int:
    code = _DTYPE_CODES.get(dtype)
    if code is None:
        digest = hashlib.blake2b(str(dtype).encode(), digest_size=4).digest()
        code = _DTYPE_CODES[dtype] = int.from_bytes(digest, "little")
    return code


def layout_fingerprint(leaves: list[torch.Tensor], ignore_dim: int | None = None) -> int:
    """A 62-bit number equal on two processes when their tensors' dtypes and shapes match.

    ``ignore_dim`` leaves that dimension's size out (for tensors that have it), for inputs
    that may legitimately differ there, as in ``pad_across_processes``. Built with Python's
    ``hash`` of tuples of ints, which (unlike the hash of a string) is the same in every
    CPython process, whatever ``PYTHONHASHSEED`` says; about 1 µs per tensor.

    Example:
        >>> a = layout_fingerprint([torch.ones(2, 3)], ignore_dim=0)
        >>> a == layout_fingerprint([torch.ones(5, 3)], ignore_dim=0)
        True
    """
    codes = _DTYPE_CODES
    parts: list[tuple[Any, ...]] = []
    for leaf in leaves:
        dtype = leaf.dtype
        code = codes.get(dtype)
        if code is None:
            code = _dtype_code(dtype)
        if leaf.is_nested:
            parts.append((code, -2, leaf.dim()))
            continue
        shape = leaf.shape
        if ignore_dim is not None and -len(shape) <= ignore_dim < len(shape):
            masked = list(shape)
            masked[ignore_dim] = -1
            shape = tuple(masked)
        parts.append((code, shape))
    return hash(tuple(parts)) & _MASK
