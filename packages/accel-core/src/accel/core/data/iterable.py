"""``IterableDatasetShard``: one process's share of an iterable dataset."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset

from accel.core.data.samplers import _check_shard_position, _split_error
from accel.core.data.tracking import length_of

__all__ = ["IterableDatasetShard"]


class IterableDatasetShard(IterableDataset):
    """The samples of an iterable ``dataset`` that belong to one process.

    Every process iterates the whole dataset and keeps its slice of each global batch: with
    ``split_batches=False`` a global batch holds ``batch_size * num_processes`` samples and
    each process keeps ``batch_size`` consecutive ones; with ``split_batches=True`` a global
    batch holds ``batch_size`` samples and each process keeps ``batch_size // num_processes``.
    An incomplete last global batch is dropped with ``drop_last``, otherwise completed with
    samples from the first global batch, so every process yields the same number of samples.

    Example:
        >>> class Numbers(IterableDataset):
        ...     def __iter__(self):
        ...         return iter(range(8))
        >>> list(IterableDatasetShard(Numbers(), batch_size=2, num_processes=2, process_index=1))
        [2, 3, 6, 7]
    """

    def __init__(
        self,
        dataset: IterableDataset,
        batch_size: int = 1,
        drop_last: bool = False,
        num_processes: int = 1,
        process_index: int = 0,
        split_batches: bool = False,
    ) -> None:
        _check_shard_position("IterableDatasetShard", num_processes, process_index)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"IterableDatasetShard needs batch_size to be an int >= 1, got {batch_size!r} "
                "(a DataLoader over an iterable dataset must batch: pass batch_size=...)."
            )
        if split_batches and batch_size % num_processes != 0:
            raise _split_error("IterableDatasetShard", batch_size, num_processes)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.num_processes = num_processes
        self.process_index = process_index
        self.split_batches = split_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch and pass it on to the wrapped dataset if it accepts one.

        Example:
            >>> class Stream(IterableDataset):
            ...     def __iter__(self):
            ...         return iter(range(3))
            >>> shard = IterableDatasetShard(Stream(), batch_size=1)
            >>> shard.set_epoch(3)
            >>> shard.epoch
            3
        """
        self.epoch = epoch
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def __len__(self) -> int:
        global_batch = self.batch_size * self.num_processes
        rounds = length_of(self.dataset) / global_batch  # TypeError for an unsized dataset
        rounds = math.floor(rounds) if self.drop_last else math.ceil(rounds)
        return rounds * self.batch_size

    def __iter__(self) -> Iterator[Any]:
        generator = getattr(self.dataset, "generator", None)
        if not hasattr(self.dataset, "set_epoch") and isinstance(generator, torch.Generator):
            generator.manual_seed(self.epoch)
        if self.split_batches:
            global_batch, share = self.batch_size, self.batch_size // self.num_processes
        else:
            global_batch, share = self.batch_size * self.num_processes, self.batch_size
        start = self.process_index * share
        first: list[Any] | None = None
        current: list[Any] = []
        for sample in self.dataset:
            current.append(sample)
            if len(current) == global_batch:
                yield from current[start : start + share]
                if first is None:
                    first = current
                current = []
        if self.drop_last or not current:
            return
        refill = itertools.cycle(first if first is not None else list(current))
        current += [next(refill) for _ in range(global_batch - len(current))]
        yield from current[start : start + share]
