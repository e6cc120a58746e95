"""Debug mode: check that every process runs the same collective with matching inputs.

A collective whose inputs disagree across processes (another shape, dtype or structure), or
that only some processes call, can hang or fail deep inside the backend. With
``ACCEL_DEBUG_MODE=1`` (or Accelerate's ``ACCELERATE_DEBUG_MODE``) each collective first
exchanges a small record of itself (see :mod:`accel.state.operation_check`) and, if the
records disagree, raises :class:`DistributedOperationException` on every process, naming
what each process called, with what, and from which line.
"""

from __future__ import annotations

from typing import Any

import torch

from accel.state.operation_check import check_operation


def describe(tensor: torch.Tensor, ignore_dim: int | None = None) -> str:
    """A short text of a tensor's shape and dtype; ``ignore_dim`` shows that size as ``*``.

    Example:
        >>> describe(torch.ones(2, 3), ignore_dim=0)
        'float32[*, 3]'
    """
    sizes = [str(s) for s in tensor.shape]
    if ignore_dim is not None and sizes:
        sizes[ignore_dim % len(sizes)] = "*"
    return f"{str(tensor.dtype).removeprefix('torch.')}[{', '.join(sizes)}]"


def check_consistent(
    operation: str,
    description: Any,
    device_type: str,
    leaves: list[torch.Tensor],
    num_processes: int,
) -> None:
    """Raise on every process if the processes' operations or input descriptions differ.

    ``description`` is a text summary of the inputs (structure, shapes, dtypes), built so
    that equal means compatible. Tensors on another device than ``device_type`` are reported
    too.

    Example:
        >>> check_consistent("gather", "float32[2]", "cpu", [], 1)  # one process: no-op
    """
    wrong = sorted({t.device.type for t in leaves if t.device.type != device_type})
    problems = []
    if wrong:
        problems.append(
            f"tensors on {', '.join(wrong)}; every tensor must be on the {device_type} device "
            "this job uses (move them there first, e.g. send_to_device)"
        )
    check_operation(operation, str(description), num_processes, problems)
