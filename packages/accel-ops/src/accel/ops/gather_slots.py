"""Reused buffers for ``gather``'s checked collective, kept per input layout.

``gather`` sends every process's layout fingerprint in a fixed-size buffer, followed by the
tensors themselves when they fit (see :mod:`accel.ops.shape_check`). For a small tensor,
allocating that buffer, writing the fingerprint and cutting the views in and out cost more
than the collective. A :class:`GatherSlot` does that work once per layout (dtypes, shapes,
device, process count): a repeated gather (a loss or a batch of logits every step) then
copies its tensors in, runs the collective and copies the results out. Each thread keeps
the slots of its last ``MAX_LAYOUTS`` layouts, about ``(num_processes + 1) * 4 KB`` each, and
fewer when that would pass ``MAX_KEPT_BYTES`` (with thousands of processes, one).

Example:
    >>> import torch
    >>> slot = gather_slot([torch.ones(2)], torch.device("cpu"), 1)
    >>> slot is gather_slot([torch.zeros(2)], torch.device("cpu"), 1)
    True
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from accel.ops.fingerprint import layout_fingerprint

# What rides along with the layout check in gather's one fixed-size collective (bytes).
INLINE_BYTES = 4096
HEADER_BYTES = 16  # the fingerprint (int64), then zeros up to the first tensor
SLOT_BYTES = HEADER_BYTES + INLINE_BYTES
_ALIGN = 16  # every tensor starts 16-byte aligned, so the buffer can be viewed in its dtype
MAX_LAYOUTS = 8
MAX_KEPT_BYTES = 16 << 20  # fewer layouts are kept when the process count makes slots large

_local = threading.local()


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


class GatherSlot:
    """Send and receive buffers of ``SLOT_BYTES`` per process, and views into them, for one layout.

    ``send`` holds this process's fingerprint and, when the tensors total at most
    ``INLINE_BYTES`` (``fits``), room for each tensor; ``output`` receives every process's
    ``send``, one after the other.

    Example:
        >>> slot = GatherSlot([torch.ones(2)], torch.device("cpu"), 1)
        >>> slot.fill([torch.tensor([3.0, 4.0])])
        >>> slot.output.copy_(slot.send)  # what the collective does with one process
        tensor(...)
        >>> slot.fingerprints.tolist() == [slot.fingerprint], slot.results()
        (True, [tensor([3., 4.])])
    """

    __slots__ = ("_regions", "_rows", "fingerprint", "fingerprints", "fits", "output", "send")

    def __init__(self, leaves: list[torch.Tensor], device: torch.device, count: int) -> None:
        self.fingerprint = layout_fingerprint(leaves)
        sizes = [leaf.numel() * leaf.element_size() for leaf in leaves]
        offsets = [HEADER_BYTES]
        for size in sizes:
            offsets.append(offsets[-1] + _aligned(size))
        self.fits = offsets[-1] <= SLOT_BYTES
        self.send = torch.zeros(SLOT_BYTES, dtype=torch.uint8, device=device)
        self.send.view(torch.int64)[0] = self.fingerprint
        self.output = self.send.new_empty(count * SLOT_BYTES)
        self.fingerprints = self.output.view(torch.int64)[:: SLOT_BYTES // 8]
        self._regions: list[torch.Tensor] = []
        self._rows: list[tuple[torch.Tensor, tuple[int, ...]]] = []
        if not self.fits:
            return
        for leaf, start in zip(leaves, offsets):
            size = leaf.element_size()
            first, numel = start // size, leaf.numel()
            sent = self.send.view(leaf.dtype)[first : first + numel]
            self._regions.append(sent.view(leaf.shape))
            shape = tuple(leaf.shape) if leaf.dim() else (1,)
            received = self.output.view(leaf.dtype).view(count, SLOT_BYTES // size)
            rows = received[:, first : first + numel].view(count, *shape)
            self._rows.append((rows, (count * shape[0], *shape[1:])))

    def fill(self, leaves: list[torch.Tensor]) -> None:
        """Copy ``leaves`` (this slot's layout) into ``send``, if they fit.

        Example:
            >>> GatherSlot([torch.ones(1)], torch.device("cpu"), 1).fill([torch.zeros(1)])
        """
        if not self.fits:
            return
        if len(leaves) == 1:
            leaf = leaves[0]
            self._regions[0].copy_(leaf.detach() if leaf.requires_grad else leaf)
            return
        with torch.no_grad():
            # torch's stubs do not list its _foreach ops as exported, though they are public ops
            torch._foreach_copy_(self._regions, leaves)  # pyright: ignore[reportPrivateImportUsage]

    def results(self) -> list[torch.Tensor]:
        """Each tensor gathered from ``output``: new tensors, concatenated along dim 0.

        Example:
            >>> slot = GatherSlot([torch.ones(())], torch.device("cpu"), 1)
            >>> slot.results()[0].shape
            torch.Size([1])
        """
        return [
            rows.clone(memory_format=torch.contiguous_format).view(shape)
            for rows, shape in self._rows
        ]


def gather_slot(leaves: list[torch.Tensor], device: torch.device, count: int) -> GatherSlot:
    """This thread's slot for the layout of ``leaves``, made on first use.

    Example:
        >>> gather_slot([torch.ones(3)], torch.device("cpu"), 1).fits
        True
    """
    slots: dict[Any, GatherSlot] | None = getattr(_local, "slots", None)
    if slots is None:
        slots = _local.slots = {}
    if len(leaves) == 1:
        leaf = leaves[0]
        key: Any = (device, count, leaf.dtype, leaf.shape)
    else:
        key = (device, count, *[(leaf.dtype, leaf.shape) for leaf in leaves])
    slot = slots.get(key)
    if slot is None:
        kept = max(1, min(MAX_LAYOUTS, MAX_KEPT_BYTES // ((count + 1) * SLOT_BYTES)))
        while len(slots) >= kept:
            del slots[next(iter(slots))]
        slot = slots[key] = GatherSlot(leaves, device, count)
    return slot
