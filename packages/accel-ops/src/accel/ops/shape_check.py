"""Always-on layout check for ``gather`` and ``pad_across_processes`` (no debug mode needed).

``gather`` moves each process's tensors as flat buffers whose sizes every process assumes
equal; if one process passes another shape, one side reads wrong data while the other fails
inside the backend. So ``gather`` starts with one all-gather of a fixed-size buffer holding a
62-bit fingerprint of its tensors' dtypes and shapes (:mod:`accel.ops.fingerprint`) and,
when they fit in ``INLINE_BYTES`` (:mod:`accel.ops.gather_slots`), the tensors themselves
(see :func:`checked_gather`). ``pad_across_processes`` already all-reduces its sizes
(``MAX``), so it carries ``[f, -f]`` in that same collective (the max of ``f`` equals the
min exactly when all agree; the padded dimension is left out), at no extra round trip. On a mismatch every process raises
:class:`DistributedOperationException`, naming what each process passed.

Example:
    >>> import torch
    >>> from accel.ops.shape_check import fingerprint_probe
    >>> fingerprint_probe(5, torch.device("cpu"), []).tolist()
    [5, -5]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from accel.ops.gather_slots import gather_slot
from accel.state import PartialState
from accel.state.operation_check import DistributedOperationException, check_operation


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


def all_gather_into(output: torch.Tensor, flat: torch.Tensor, count: int) -> torch.Tensor:
    """All-gather every process's 1-d ``flat`` (all of one size) into the 1-d ``output``.

    The output goes to ``all_gather_into_tensor`` 1-d: gloo refuses a 2-d one, and raising
    then falling back to the list form cost ~5 ms a call here, 20x the collective itself.

    Example:
        >>> all_gather_into(torch.empty(2), torch.ones(2), 1)  # doctest: +SKIP
        tensor([1., 1.])
    """
    try:
        dist.all_gather_into_tensor(output, flat)
    except (RuntimeError, NotImplementedError):
        dist.all_gather(list(output.chunk(count)), flat)
    return output


def all_gather_rows(flat: torch.Tensor, count: int) -> torch.Tensor:
    """Every process's 1-d ``flat`` (all of one size) as the rows of a ``(count, n)`` tensor.

    Example:
        >>> all_gather_rows(torch.ones(2), 1)  # doctest: +SKIP
        tensor([[1., 1.]])
    """
    output = flat.new_empty(count * flat.numel())
    return all_gather_into(output, flat, count).view(count, -1)


def checked_gather(
    state: PartialState, leaves: list[torch.Tensor], describe: Callable[[], str]
) -> list[torch.Tensor] | None:
    """Check that every process gathers the same layout; gather small inputs on the way.

    One all-gather of a fixed-size byte buffer (so it cannot itself mismatch) carries each
    process's fingerprint and, when the tensors total at most ``INLINE_BYTES``, the tensors
    themselves: a small gather costs one collective, check included. The buffers are reused
    from one call to the next with the same layout (:mod:`accel.ops.gather_slots`). Returns
    each leaf gathered (concatenated along dim 0, in ``gather``'s layout), or ``None`` when
    the inputs were too large to ride along (every process agrees, as their layouts are
    equal); raises ``DistributedOperationException`` on every process when the layouts differ.

    Example:
        >>> checked_gather(PartialState(), [torch.ones(2)], lambda: "float32[2]")  # doctest: +SKIP
        [tensor([1., 1., 1., 1.])]
    """
    count = state.num_processes
    slot = gather_slot(leaves, state.device, count)
    slot.fill(leaves)
    all_gather_into(slot.output, slot.send, count)
    fingerprints = slot.fingerprints.tolist()
    if fingerprints.count(slot.fingerprint) != count:
        raise_on_mismatch(state, "gather", [max(fingerprints), -min(fingerprints)], describe)
    return slot.results() if slot.fits else None
