"""Always-on layout check for ``gather`` and ``pad_across_processes`` (no debug mode needed).

``gather`` moves each process's tensors as flat buffers whose sizes every process assumes
equal; if one process passes another shape, one side reads wrong data while the other fails
inside the backend. So ``gather`` starts with one all-gather of a fixed-size buffer holding a
62-bit fingerprint of its tensors' dtypes and shapes and, when they fit in ``INLINE_BYTES``,
the tensors themselves (see :func:`checked_gather`). ``pad_across_processes`` already
all-reduces its sizes (``MAX``), so it carries ``[f, -f]`` in that same collective (the max of
``f`` equals the min exactly when all agree; the padded dimension is left out), at no
extra round trip. On a mismatch every process raises
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
# What rides along with the layout check in gather's one fixed-size collective (bytes).
INLINE_BYTES = 4096
_HEADER = 16  # fingerprint and "the tensors are inline" flag, two int64
_ALIGN = 16  # every tensor starts 16-byte aligned, so any dtype can be viewed in place
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


def all_gather_rows(flat: torch.Tensor, count: int) -> torch.Tensor:
    """Every process's 1-d ``flat`` (all of one size) as the rows of a ``(count, n)`` tensor.

    The output goes to ``all_gather_into_tensor`` 1-d: gloo refuses a 2-d one, and raising
    then falling back to the list form cost ~5 ms a call here, 20x the collective itself.

    Example:
        >>> all_gather_rows(torch.ones(2), 1)  # doctest: +SKIP
        tensor([[1., 1.]])
    """
    output = flat.new_empty(count * flat.numel())
    try:
        dist.all_gather_into_tensor(output, flat)
    except (RuntimeError, NotImplementedError):
        dist.all_gather(list(output.chunk(count)), flat)
    return output.view(count, -1)


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def checked_gather(
    state: PartialState, leaves: list[torch.Tensor], describe: Callable[[], str]
) -> list[torch.Tensor] | None:
    """Check that every process gathers the same layout; gather small inputs on the way.

    One all-gather of a fixed-size byte buffer (so it cannot itself mismatch) carries each
    process's fingerprint and, when the tensors total at most ``INLINE_BYTES``, the tensors
    themselves: a small gather costs one collective, check included. Returns each leaf
    gathered (concatenated along dim 0, in ``gather``'s layout), or ``None`` when the inputs
    were too large to ride along (every process agrees, as their layouts are equal); raises
    ``DistributedOperationException`` on every process when the layouts differ.

    Example:
        >>> checked_gather(PartialState(), [torch.ones(2)], lambda: "float32[2]")  # doctest: +SKIP
        [tensor([1., 1., 1., 1.])]
    """
    sizes = [leaf.numel() * leaf.element_size() for leaf in leaves]
    offsets = [_HEADER]
    for size in sizes:
        offsets.append(offsets[-1] + _aligned(size))
    fits = offsets[-1] <= _HEADER + INLINE_BYTES
    buffer = torch.empty(_HEADER + INLINE_BYTES, dtype=torch.uint8, device=state.device)
    header = torch.tensor([layout_fingerprint(leaves), int(fits)], dtype=torch.int64)
    buffer[:_HEADER].copy_(header.view(torch.uint8))
    if fits:
        for leaf, start, size in zip(leaves, offsets, sizes):
            flat = leaf.detach().contiguous().view(-1).view(torch.uint8)
            buffer[start : start + size].copy_(flat)
    count = state.num_processes
    rows = all_gather_rows(buffer, count)
    fingerprints = rows[:, :_HEADER].cpu().view(torch.int64)[:, 0].tolist()
    raise_on_mismatch(state, "gather", [max(fingerprints), -min(fingerprints)], describe)
    if not fits:
        return None
    results = []
    for leaf, start, size in zip(leaves, offsets, sizes):
        part = rows[:, start : start + size].contiguous().view(leaf.dtype)
        shape = leaf.shape if leaf.dim() else (1,)
        results.append(part.reshape(count * shape[0], *shape[1:]))
    return results
