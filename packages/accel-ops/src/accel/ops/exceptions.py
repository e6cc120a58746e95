"""Exceptions raised by accel's operations on tensors and nested structures.

``DistributedOperationException`` lives in :mod:`accel.state.operation_check` (the barrier
of ``accel.state`` raises it too); it is re-exported here under Accelerate's import path.

Example:
    >>> from accel.ops.exceptions import DistributedOperationException
    >>> from accel.state.operation_check import DistributedOperationException as same
    >>> DistributedOperationException is same
    True
"""

from __future__ import annotations

from accel.state.operation_check import DistributedOperationException

__all__ = ["DistributedOperationException"]
