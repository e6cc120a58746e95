"""Packing many tensors into one flat buffer per dtype, so a collective runs once per dtype.

A collective call costs the same fixed latency whether it moves 4 bytes or 4 kB; gathering a
dict of 100 small tensors one tensor at a time pays that latency 100 times. Packing them into
one buffer per (dtype, device) pays it once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

# Dtypes that some backends (gloo) cannot reduce or move are carried bit-for-bit as bytes.
_CARRIED_AS_BYTES = {torch.bool: torch.uint8}


@dataclass
class Bucket:
    """Tensors of one dtype and device, and where each sits in the flat buffer.

    Example:
        >>> buckets = list(make_buckets([torch.ones(2), torch.zeros(3)]))
        >>> buckets[0].flat.shape, buckets[0].offsets
        (torch.Size([5]), [0, 2, 5])
    """

    indices: list[int]
    tensors: list[torch.Tensor]
    offsets: list[int]
    flat: torch.Tensor

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the tensors (before any byte view).

        Example:
            >>> next(make_buckets([torch.ones(1)])).dtype
            torch.float32
        """
        return self.tensors[0].dtype

    def parts(self, buffer: torch.Tensor) -> Iterator[torch.Tensor]:
        """Cut a buffer laid out like ``flat`` (last dim) back into one flat piece per tensor.

        Example:
            >>> b = next(make_buckets([torch.ones(2), torch.zeros(1)]))
            >>> [p.tolist() for p in b.parts(b.flat)]
            [[1.0, 1.0], [0.0]]
        """
        # One split_with_sizes call makes all the views at once (much cheaper than slicing
        # the buffer once per tensor in Python).
        sizes = [end - start for start, end in zip(self.offsets, self.offsets[1:])]
        return iter(torch.split(buffer, sizes, dim=-1))

    def views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Views of a buffer laid out like ``flat``, one per tensor, in its shape and dtype.

        Example:
            >>> b = next(make_buckets([torch.ones(2, 2), torch.zeros(1)]))
            >>> [tuple(v.shape) for v in b.views(b.flat)]
            [(2, 2), (1,)]
        """
        pieces = self.parts(from_wire(buffer, self.dtype))
        # view_as only where the shape differs: a Python-level view call costs microseconds,
        # which adds up over hundreds of tensors, and 1-d tensors already have their shape.
        return [
            piece if piece.shape == original.shape else piece.view_as(original)
            for piece, original in zip(pieces, self.tensors)
        ]


def as_wire(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in a dtype every backend can move (``bool`` travels as ``uint8``).

    Example:
        >>> as_wire(torch.tensor([True])).dtype
        torch.uint8
    """
    wire = _CARRIED_AS_BYTES.get(tensor.dtype)
    return tensor if wire is None else tensor.view(wire)


def from_wire(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Undo :func:`as_wire`.

    Example:
        >>> from_wire(torch.tensor([1], dtype=torch.uint8), torch.bool)
        tensor([True])
    """
    return tensor if tensor.dtype == dtype else tensor.view(dtype)


def make_buckets(tensors: list[torch.Tensor], pack: bool = True) -> Iterator[Bucket]:
    """Group ``tensors`` by (dtype, device) and pack each group into one flat, contiguous buffer.

    A group of one tensor is not copied: its buffer is a flat view of it (made contiguous
    only if it was not). With ``pack=False`` a group of several tensors gets an uninitialised
    buffer of the right size instead (for a process that only receives into it).

    Example:
        >>> [b.indices for b in make_buckets([torch.ones(1), torch.ones(1, dtype=torch.int64)])]
        [[0], [1]]
    """
    groups: dict[tuple[torch.dtype, torch.device], tuple[list[int], list[torch.Tensor]]] = {}
    for index, tensor in enumerate(tensors):
        key = (tensor.dtype, tensor.device)
        group = groups.get(key)
        if group is None:
            groups[key] = ([index], [tensor])
        else:
            group[0].append(index)
            group[1].append(tensor)
    for indices, members in groups.values():
        offsets = [0]
        for tensor in members:
            offsets.append(offsets[-1] + tensor.numel())
        if len(members) == 1:
            flat = as_wire(members[0].contiguous().view(-1))
        elif pack:
            flat = as_wire(torch.cat([t.reshape(-1) for t in members]))
        else:
            flat = as_wire(members[0].new_empty(offsets[-1]))
        yield Bucket(indices, members, offsets, flat)
