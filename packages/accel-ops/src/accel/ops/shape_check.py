"""Always-on layout check for ``gather`` and ``pad_across_processes`` (no debug mode needed).

``gather`` moves each process's tensors as flat buffers whose sizes every process assumes
equal; if one process passes another shape, one side reads wrong data while the other fails
inside the backend. So ``gather`` first all-reduces two integers, ``[f, -f]`` with ``MAX``,
where ``f`` is a 62-bit fingerprint of its tensors' dtypes and shapes: the maximum of ``f``
equals the minimum exactly when all fingerprints agree. ``pad_across_processes`` already
all-reduces its sizes, so it carries the fingerprint in that same collective (the padded
dimension left out), at no extra round trip. On a mismatch every process raises
:class:`DistributedOperationException`, naming what each process passed.

Example:
    >>> import torch
    >>> from accel.ops.shape_check import layout_fingerprint
    >>> layout_fingerprint([torch.ones(2)]) == layout_fingerprint([torch.zeros(2)])
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from accel.state import PartialState
from accel.state.operation_check import DistributedOperationException, check_operation

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


def fingerprint_probe(fingerprint: int, device: torch.device, extra: list[int]) -> torch.Tensor:
    """The tensor ``[f, -f, *extra]`` to all-reduce with ``MAX``.

    Example:
        >>> fingerprint_probe(7, torch.device("cpu"), [3]).tolist()
        [7, -7, 3]
    """
    return torch.tensor([fingerprint, -fingerprint, *extra], dtype=torch.int64, device=device)


def raise_on_mismatch(
    state: PartialState, operation: str, reduced: list[int], describe: Callable[[], str]
) -> None:
    """After the ``MAX`` all-reduce of a probe: raise on every process if fingerprints differ.

    All processes see the same reduced values, so all of them take the same branch. Where the
    backend can move objects, they then exchange descriptions so the error shows each one's.

    Example:
        >>> raise_on_mismatch(PartialState(), "gather", [7, -7], lambda: "float32[2]")
    """
    if reduced[0] == -reduced[1]:
        return
    description = describe()
    backend = state.collective_backend
    if backend is not None and backend.supports_object_collectives:
        check_operation(operation, description, state.num_processes)
    raise DistributedOperationException(
        f"accel.ops.{operation}: the tensors' shapes or dtypes differ across processes, so the "
        f"collective cannot run (this is process {state.process_index}: {description}). Every "
        "process must pass the same structure, dtypes and shapes; run with ACCEL_DEBUG_MODE=1 "
        "to see each process's inputs."
    )


def check_gather_layout(
    state: PartialState, leaves: list[torch.Tensor], describe: Callable[[], str]
) -> None:
    """Raise on every process unless all of them gather tensors of the same dtypes and shapes.

    Example:
        >>> check_gather_layout(PartialState(), [torch.ones(2)], lambda: "float32[2]")  # doctest: +SKIP
    """
    probe = fingerprint_probe(layout_fingerprint(leaves), state.device, [])
    dist.all_reduce(probe, op=dist.ReduceOp.MAX)
    raise_on_mismatch(state, "gather", probe.tolist(), describe)
