"""Exceptions raised by accel's operations on tensors and nested structures."""

from __future__ import annotations

__all__ = ["DistributedOperationException"]


class DistributedOperationException(Exception):
    """A collective was called with inputs that disagree across processes.

    Raised (on every process, in debug mode) instead of letting the collective hang or fail
    deep inside torch, for instance when one process passes a tensor of another shape, dtype
    or structure than the others.

    Example:
        >>> from accel.ops.exceptions import DistributedOperationException
        >>> try:
        ...     raise DistributedOperationException("process 1 sent shape (3,), process 0 (4,)")
        ... except DistributedOperationException as error:
        ...     print(error)
        process 1 sent shape (3,), process 0 (4,)
    """
