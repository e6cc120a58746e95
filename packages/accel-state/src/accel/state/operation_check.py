"""Debug mode: every process must be in the same collective, with matching inputs.

Two processes that call different collectives (one ``gather``, the other ``reduce`` or a
barrier) hang until the group's timeout, or fail inside the backend. With
``ACCEL_DEBUG_MODE=1`` each collective of accel (and ``wait_for_everyone``) first exchanges
a short record of itself: the operation, a description of its inputs, and the line of user
code that called it. If the records disagree, every process raises
:class:`DistributedOperationException` naming what each process was doing and where.

Example:
    >>> from accel.state.operation_check import check_operation
    >>> check_operation("gather", "float32[4]", num_processes=1)  # one process: nothing to compare
"""

from __future__ import annotations

import sys
from typing import Any

import torch.distributed as dist

__all__ = ["DistributedOperationException", "call_site", "check_operation", "format_records"]

# Frames of these modules are library code; the call site is the first frame outside them.
_LIBRARY_MODULES = ("accel", "accelerate", "torch", "contextlib", "functools")


class DistributedOperationException(Exception):
    """A collective was called with inputs (or in an order) that disagree across processes.

    Raised on every process instead of letting the collective hang or fail deep inside
    torch, for instance when one process passes a tensor of another shape, dtype or structure
    than the others, or calls another collective than they do.

    Example:
        >>> from accel.state.operation_check import DistributedOperationException
        >>> try:
        ...     raise DistributedOperationException("process 1 sent shape (3,), process 0 (4,)")
        ... except DistributedOperationException as error:
        ...     print(error)
        process 1 sent shape (3,), process 0 (4,)
    """


def _is_library(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in _LIBRARY_MODULES)


def call_site() -> str:
    """``file:line`` of the innermost caller outside accel, Accelerate, torch and contextlib.

    Example:
        >>> call_site()  # doctest: +ELLIPSIS
        '...'
    """
    frame = sys._getframe(1)
    while frame is not None and _is_library(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def format_records(records: list[tuple[str, str, str]]) -> str:
    """One line per process: ``process R: OPERATION(DESCRIPTION) at FILE:LINE``.

    Example:
        >>> print(format_records([("gather", "float32[2]", "a.py:3"), ("reduce", "float32[2]", "a.py:5")]))
          process 0: gather(float32[2]) at a.py:3
          process 1: reduce(float32[2]) at a.py:5
    """
    return "\n".join(
        f"  process {rank}: {operation}({description}) at {site}"
        for rank, (operation, description, site) in enumerate(records)
    )


def check_operation(
    operation: str,
    description: str = "",
    num_processes: int | None = None,
    problems: list[str] | None = None,
) -> None:
    """Compare this call with every other process's current call; raise on all if they differ.

    ``description`` summarizes the inputs so that equal means compatible (shapes, dtypes,
    structure). ``problems`` lists what this process found wrong on its own (e.g. a tensor on
    the wrong device); any process's problems make every process raise. Every process must
    call this from its collective, before the collective runs.

    Example:
        >>> check_operation("wait_for_everyone", "barrier", num_processes=1)
    """
    if num_processes is None:
        num_processes = dist.get_world_size() if dist.is_initialized() else 1
    if num_processes < 2:
        return
    site = call_site()
    everyone: list[Any] = [None] * num_processes
    dist.all_gather_object(everyone, (operation, description, site, problems or []))
    records = [(op, desc, where) for op, desc, where, _ in everyone]
    reported = [(rank, found) for rank, (*_, found) in enumerate(everyone) if found]
    if reported:
        lines = "\n".join(f"  process {rank}: {'; '.join(found)}" for rank, found in reported)
        raise DistributedOperationException(
            f"accel.ops.{operation}: some processes passed unusable inputs.\n{lines}\n"
            f"The calls were:\n{format_records(records)}"
        )
    operations = {op for op, _, _ in records}
    if len(operations) > 1:
        raise DistributedOperationException(
            "the processes called different collective operations at the same point, so they "
            "would wait for each other forever (or exchange wrong data). Every process must "
            f"call the same collectives in the same order.\n{format_records(records)}"
        )
    if all(desc == records[0][1] for _, desc, _ in records):
        return
    raise DistributedOperationException(
        f"accel.ops.{operation}: the inputs differ across processes, so the collective cannot "
        "run. Every process must pass the same structure, dtypes and shapes.\n"
        f"{format_records(records)}"
    )
