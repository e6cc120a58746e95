"""Debug mode: check that every process passes matching inputs to a collective.

A collective whose inputs disagree across processes (another shape, dtype or structure) can
hang or fail deep inside the backend. With ``ACCEL_DEBUG_MODE=1`` (or Accelerate's
``ACCELERATE_DEBUG_MODE``) each collective first exchanges a small description of its inputs
and, if they disagree, raises :class:`DistributedOperationException` on every process, naming
what each process passed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from accel.ops.exceptions import DistributedOperationException


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
    """Raise on every process if the processes' input descriptions differ.

    ``description`` is any picklable summary of the inputs (structure, shapes, dtypes), built
    so that equal means compatible.

    Example:
        >>> check_consistent("gather", ["float32[2]"], "cpu", [], 1)  # doctest: +SKIP
    """
    wrong_device = sorted({t.device.type for t in leaves if t.device.type != device_type})
    everyone: list[Any] = [None] * num_processes
    dist.all_gather_object(everyone, (description, wrong_device))
    if any(entry[1] for entry in everyone):
        lines = "\n".join(
            f"  process {rank}: tensors on {', '.join(devs)}"
            for rank, (_, devs) in enumerate(everyone)
            if devs
        )
        raise DistributedOperationException(
            f"accel.ops.{operation}: every tensor must be on the {device_type} device this job "
            f"uses; move them there first (e.g. send_to_device).\n{lines}"
        )
    if all(entry[0] == everyone[0][0] for entry in everyone):
        return
    lines = "\n".join(f"  process {rank}: {entry[0]}" for rank, entry in enumerate(everyone))
    raise DistributedOperationException(
        f"accel.ops.{operation}: the inputs differ across processes, so the collective cannot "
        f"run. Every process must pass the same structure, dtypes and shapes.\n{lines}"
    )
