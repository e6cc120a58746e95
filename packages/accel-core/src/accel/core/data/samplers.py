"""Index samplers for sharded data loading: seedable shuffling, per-process batches, skipping."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, RandomSampler

from accel.core.data.tracking import length_of

__all__ = ["BatchSamplerShard", "SeedableRandomSampler", "SkipBatchSampler"]


def _default_generator_device() -> torch.device | str:
    getter = getattr(torch, "get_default_device", None)
    return getter() if getter is not None else "cpu"


class SeedableRandomSampler(RandomSampler):
    """A ``RandomSampler`` whose order depends only on a seed and the epoch.

    Each pass reseeds the generator with ``initial_seed + epoch``, where ``initial_seed`` is
    ``data_seed`` or, without it, torch's initial seed (the one ``set_seed`` sets). Every
    process built from the same seed therefore draws the same permutation for a given epoch,
    a new one for the next epoch, and the run can be replayed. The epoch advances by one after
    each complete pass; :meth:`set_epoch` sets it explicitly.

    Example:
        >>> sampler = SeedableRandomSampler(range(5), data_seed=7)
        >>> first = list(sampler)
        >>> sampler.set_epoch(0)
        >>> list(sampler) == first
        True
    """

    def __init__(self, *args: Any, data_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.generator is None:  # made now, so a checkpoint finds it before the first pass
            self.generator = torch.Generator(device=_default_generator_device())
        self.initial_seed: int = data_seed if data_seed is not None else torch.random.initial_seed()
        self.epoch: int = 0

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(self.initial_seed + self.epoch)
        yield from super().__iter__()
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next pass draws.

        Example:
            >>> sampler = SeedableRandomSampler(range(3), data_seed=0)
            >>> sampler.set_epoch(4)
            >>> sampler.epoch
            4
        """
        self.epoch = epoch


def _split_error(owner: str, batch_size: int | None, num_processes: int) -> ValueError:
    return ValueError(
        f"{owner} with split_batches=True cuts every batch into num_processes={num_processes} "
        f"equal pieces, but the batch size is {batch_size}, which is not a multiple of "
        f"{num_processes}. Use a batch size that is a multiple of {num_processes}, or pass "
        "split_batches=False to give each process whole batches."
    )


def _check_shard_position(owner: str, num_processes: int, process_index: int) -> None:
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"{owner} needs num_processes >= 1, got num_processes={num_processes!r}.")
    if (
        isinstance(process_index, bool)
        or not isinstance(process_index, int)
        or not 0 <= process_index < num_processes
    ):
        raise ValueError(
            f"{owner} got process_index={process_index!r}; with num_processes={num_processes} it "
            f"must be an int in [0, {num_processes - 1}]."
        )


class BatchSamplerShard(BatchSampler):
    """The batches of ``batch_sampler`` that belong to one process out of ``num_processes``.

    Without ``split_batches``, batches are dealt round-robin: process ``k`` gets batches
    ``k, k + n, k + 2n, ...``. With ``split_batches``, every batch is cut into ``n`` equal
    pieces and process ``k`` gets piece ``k`` (the batch size must divide by ``n``).

    When the sampler does not drop its last batch and the data does not fill the last round,
    ``even_batches=True`` completes it with indices taken again from the start, so every
    process gets the same number of full batches; ``even_batches=False`` leaves the last
    round short (some processes get one batch fewer, or a smaller batch). With a
    ``drop_last`` sampler, an incomplete last round is dropped.

    Example:
        >>> from torch.utils.data import BatchSampler, SequentialSampler
        >>> batches = BatchSampler(SequentialSampler(range(6)), batch_size=2, drop_last=False)
        >>> list(BatchSamplerShard(batches, num_processes=2, process_index=1))
        [[2, 3], [0, 1]]
    """

    def __init__(
        self,
        batch_sampler: Iterable[Sequence[int]],
        num_processes: int = 1,
        process_index: int = 0,
        split_batches: bool = False,
        even_batches: bool = True,
    ) -> None:
        _check_shard_position("BatchSamplerShard", num_processes, process_index)
        self.batch_sampler = batch_sampler
        self.num_processes = num_processes
        self.process_index = process_index
        self.split_batches = split_batches
        self.even_batches = even_batches
        self.batch_size: int | None = getattr(batch_sampler, "batch_size", None)
        self.drop_last: bool = getattr(batch_sampler, "drop_last", False)
        if split_batches and (self.batch_size is None or self.batch_size % num_processes != 0):
            raise _split_error("BatchSamplerShard", self.batch_size, num_processes)

    @property
    def total_length(self) -> int:
        """Number of batches of the wrapped sampler (all processes together).

        Example:
            >>> from torch.utils.data import BatchSampler, SequentialSampler
            >>> batches = BatchSampler(SequentialSampler(range(5)), 2, False)
            >>> BatchSamplerShard(batches, 2, 0).total_length
            3
        """
        return length_of(self.batch_sampler, "batch sampler")

    def __len__(self) -> int:
        total = length_of(self.batch_sampler, "batch sampler")
        if self.split_batches:
            return total
        full_rounds, leftover = divmod(total, self.num_processes)
        if leftover == 0 or self.drop_last:
            return full_rounds
        if self.even_batches or self.process_index < leftover:
            return full_rounds + 1
        return full_rounds

    def __iter__(self) -> Iterator[list[int]]:
        if self.split_batches:
            return self._pieces_of_batches()
        return self._whole_batches()

    def _pieces_of_batches(self) -> Iterator[list[int]]:
        size = self.batch_size
        if size is None:  # refused by __init__ with split_batches
            raise _split_error("BatchSamplerShard", size, self.num_processes)
        piece = size // self.num_processes
        mine = slice(piece * self.process_index, piece * (self.process_index + 1))
        first: list[int] = []
        last: list[int] = []
        for position, batch in enumerate(self.batch_sampler):
            batch = list(batch)
            if position == 0:
                first = batch
            last = batch
            if len(batch) == size:
                yield batch[mine]
        if self.drop_last or not first or len(last) >= size:
            return
        if not self.even_batches:
            if len(last) > mine.start:
                yield last[mine]
            return
        # Complete the short last batch with indices from the start of the first batch.
        refill = itertools.cycle(first)
        completed = last + [next(refill) for _ in range(size - len(last))]
        yield completed[mine]

    def _whole_batches(self) -> Iterator[list[int]]:
        n, rank, size = self.num_processes, self.process_index, self.batch_size
        keep_head = not self.drop_last
        head: list[Any] = []  # the first n batches, reused to complete the last round
        pending: Any = None  # this process's batch of the round in progress
        last: Any = None
        seen = 0
        for position, batch in enumerate(self.batch_sampler):
            seen, last = position + 1, batch
            if keep_head and position < n:
                head.append(batch)
            if position % n == rank:
                pending = batch
            if position % n == n - 1 and (size is None or len(batch) == size):
                yield pending
                pending = None
        if pending is not None and len(pending) == 0:
            pending = None  # an empty batch: nothing left for this process
        if not keep_head or not (head if size is None else any(len(b) for b in head)):
            return
        if not self.even_batches:
            if pending is not None:
                yield pending
            return
        if pending is not None and (size is None or len(pending) == size):
            yield pending
        if size is None:
            # Batches of free size: complete the round with whole batches from the start.
            refill_batches = itertools.cycle(head)
            for position in range(seen, -(-seen // n) * n):
                batch = next(refill_batches)
                if position % n == rank:
                    yield batch
            return
        refill = itertools.cycle([index for batch in head for index in batch])
        if len(last) == size:
            position, partial = seen, []
        else:
            position, partial = seen - 1, list(last)
        while position % n != 0 or partial:
            batch = partial + [next(refill) for _ in range(size - len(partial))]
            if position % n == rank:
                yield batch
            partial = []
            position += 1


class SkipBatchSampler(BatchSampler):
    """The batches of ``batch_sampler`` after the first ``skip_batches``.

    Example:
        >>> from torch.utils.data import BatchSampler, SequentialSampler
        >>> batches = BatchSampler(SequentialSampler(range(6)), batch_size=2, drop_last=False)
        >>> list(SkipBatchSampler(batches, skip_batches=2))
        [[4, 5]]
    """

    def __init__(self, batch_sampler: Iterable[Sequence[int]], skip_batches: int = 0) -> None:
        if isinstance(skip_batches, bool) or not isinstance(skip_batches, int) or skip_batches < 0:
            raise ValueError(
                f"SkipBatchSampler needs skip_batches to be an int >= 0, got {skip_batches!r}."
            )
        self.batch_sampler = batch_sampler
        self.skip_batches = skip_batches

    @property
    def batch_size(self) -> int | None:
        """The batch size of the wrapped sampler (``None`` if it has none).

        Example:
            >>> from torch.utils.data import BatchSampler, SequentialSampler
            >>> SkipBatchSampler(BatchSampler(SequentialSampler(range(4)), 2, False), 1).batch_size
            2
        """
        return getattr(self.batch_sampler, "batch_size", None)

    @property
    def drop_last(self) -> bool:
        """Whether the wrapped sampler drops its last incomplete batch.

        Example:
            >>> from torch.utils.data import BatchSampler, SequentialSampler
            >>> SkipBatchSampler(BatchSampler(SequentialSampler(range(4)), 2, True)).drop_last
            True
        """
        return getattr(self.batch_sampler, "drop_last", False)

    @property
    def total_length(self) -> int:
        """Number of batches of the wrapped sampler, skipped ones included.

        Example:
            >>> from torch.utils.data import BatchSampler, SequentialSampler
            >>> SkipBatchSampler(BatchSampler(SequentialSampler(range(4)), 2, False), 1).total_length
            2
        """
        return length_of(self.batch_sampler, "batch sampler")

    def __iter__(self) -> Iterator[Sequence[int]]:
        return itertools.islice(iter(self.batch_sampler), self.skip_batches, None)

    def __len__(self) -> int:
        return max(length_of(self.batch_sampler, "batch sampler") - self.skip_batches, 0)
