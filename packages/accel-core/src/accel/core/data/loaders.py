"""The dataloaders ``prepare_data_loader`` returns: sharded, dispatched, and skipping.

The bookkeeping of each pass (resume position, RNG records, epochs) is in
:mod:`accel.core.data.passes`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from accel.core.data.passes import ResumeIndexSkip, before_fetch, finish_pass, start_pass
from accel.core.data.tracking import (
    DataLoaderStateMixin,
    _batch_sampler_chain,
    batch_size_of,
    get_sampler,
    length_of,
    replace_sampler,
    set_epoch_everywhere,
)
from accel.ops import (
    broadcast,
    broadcast_object_list,
    concatenate,
    find_batch_size,
    get_data_structure,
    initialize_tensors,
    send_to_device,
    slice_tensors,
    synchronize_rng_states,
)
from accel.state import GradientState, PartialState, RNGType

__all__ = ["DataLoaderDispatcher", "DataLoaderShard", "SkipDataLoader"]


def _refuse_stateful(use_stateful_dataloader: bool, owner: str) -> None:
    if use_stateful_dataloader:
        raise ValueError(
            f"{owner}(use_stateful_dataloader=True) is not supported: accel records the "
            "position of every prepared dataloader itself (epoch and batches yielded), so "
            "torchdata's StatefulDataLoader is not needed; pass use_stateful_dataloader=False."
        )


class _PreparedDataLoader(DataLoaderStateMixin, DataLoader):
    """What :class:`DataLoaderShard` and :class:`DataLoaderDispatcher` share: epoch and sampler."""

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass and tell the samplers (or the dataset) about it.

        Example:
            >>> loader = DataLoaderShard(range(4), batch_size=2)
            >>> loader.set_epoch(3)
            >>> loader.iteration
            3
            >>> loader = DataLoaderDispatcher(range(4), batch_size=2)
            >>> loader.set_epoch(2)
            >>> loader.iteration
            2
        """
        self._epoch = epoch
        set_epoch_everywhere(self, epoch)

    def get_sampler(self) -> Any:
        """The index sampler behind the batches (for a dispatcher, the one used on process 0).

        Example:
            >>> DataLoaderShard(range(4), batch_size=2).get_sampler().__class__.__name__
            'SequentialSampler'
            >>> DataLoaderDispatcher(range(4), batch_size=2).get_sampler().__class__.__name__
            'SequentialSampler'
        """
        return get_sampler(self)

    def set_sampler(self, sampler: Any) -> None:
        """Make ``sampler`` produce the indices of the batches.

        Example:
            >>> from torch.utils.data import SequentialSampler
            >>> loader = DataLoaderShard(range(4), batch_size=2)
            >>> loader.set_sampler(SequentialSampler(range(2)))
            >>> len(list(loader))
            1
            >>> loader = DataLoaderDispatcher(range(4), batch_size=2)
            >>> loader.set_sampler(SequentialSampler(range(4)))
        """
        replace_sampler(self, sampler)


class DataLoaderShard(_PreparedDataLoader):
    """A ``DataLoader`` for one process that also handles devices, randomness and bookkeeping.

    Built like a ``DataLoader`` (``**kwargs`` go to it; sharding is done by the batch sampler
    or dataset you give it, see :func:`prepare_data_loader`). On each pass it first makes the
    generators in ``rng_types`` equal on all processes (one collective, from process 0), moves
    each batch to ``device`` if given, and reads one batch ahead so ``end_of_dataloader`` is
    already ``True`` while the last batch is processed. ``skip_batches`` batches are dropped
    at the start of every pass. ``iteration`` (alias of ``_epoch``) is the epoch passed to
    ``set_epoch`` of the samplers or dataset at the start of the next pass.

    Example:
        >>> loader = DataLoaderShard(range(5), batch_size=2)
        >>> [batch.tolist() for batch in loader]
        [[0, 1], [2, 3], [4]]
        >>> loader.total_batch_size
        2
    """

    def __init__(
        self,
        dataset: Dataset,
        device: torch.device | str | None = None,
        rng_types: Sequence[str | RNGType] | None = None,
        synchronized_generator: torch.Generator | None = None,
        skip_batches: int = 0,
        use_stateful_dataloader: bool = False,
        _drop_last: bool = False,
        _non_blocking: bool = False,
        torch_device_mesh: Any = None,
        iteration: int = 0,
        **kwargs: Any,
    ) -> None:
        _refuse_stateful(use_stateful_dataloader, type(self).__name__)
        super().__init__(dataset, **kwargs)
        self.use_stateful_dataloader = use_stateful_dataloader
        self.device = device
        self.rng_types = list(rng_types) if rng_types is not None else None
        self.synchronized_generator = synchronized_generator
        self.skip_batches = skip_batches
        self.gradient_state = GradientState()
        self._drop_last = _drop_last
        self._non_blocking = _non_blocking
        self.torch_device_mesh = torch_device_mesh
        self._epoch = iteration
        self._batches_yielded = 0
        self.end_of_dataloader = False
        self.remainder = -1

    _skip_indices = 0  # batches whose indices the next pass leaves out (a resume)

    @property
    def _index_sampler(self) -> Any:
        sampler = super()._index_sampler
        return ResumeIndexSkip(sampler, self) if self._skip_indices else sampler

    def _place(self, batch: Any) -> Any:
        if self.device is None:
            return batch
        return send_to_device(batch, self.device, non_blocking=self._non_blocking)

    _on_first_unused: Any = None  # called by ResumeIndexSkip once the used batches are left out

    def __iter__(self) -> Iterator[Any]:
        if self.rng_types is not None:
            synchronize_rng_states(self.rng_types, self.synchronized_generator)
        self.begin()
        try:
            self.set_epoch(self._epoch)
            pending = start_pass(self)
            restore_rng = pending.restore
            skip = self.skip_batches + pending.seen
            # A map-style pass resumes by skipping indices: the used batches are never loaded.
            # Worker processes replay them instead (each worker's RNG must advance as before).
            by_index = not isinstance(self.dataset, IterableDataset) and self.num_workers == 0
            position = pending.seen if by_index else 0
            self._skip_indices = position
            if position:
                self._on_first_unused = lambda: before_fetch(self, pending, position, skip)
            batches = super().__iter__()
            try:
                if not position:
                    before_fetch(self, pending, 0, skip)
                current = next(batches)
            except StopIteration:
                if position:  # saved after the last batch of this pass: the pass is over
                    if restore_rng is not None:
                        restore_rng()
                    finish_pass(self)
                return
            finally:
                self._skip_indices = 0
                self._on_first_unused = None
            while True:
                # Placed before looking ahead, so the copy overlaps with loading the next batch.
                current = self._place(current)
                if position == skip and restore_rng is not None:
                    restore_rng()  # RNG as it was when this batch was next, at save time
                    restore_rng = None
                before_fetch(self, pending, position + 1, skip)
                try:
                    following = next(batches)
                except StopIteration:
                    self.end_of_dataloader = True
                    following = None
                if position >= skip:
                    self._batches_yielded += 1
                    yield current
                if self.end_of_dataloader:
                    break
                position += 1
                current = following
            if restore_rng is not None:  # the pass ended among the skipped batches
                restore_rng()
            finish_pass(self)
        finally:
            self.end()

    @property
    def total_batch_size(self) -> int | None:
        """Samples consumed per step by all processes together (``None`` without a batch size).

        Example:
            >>> DataLoaderShard(range(8), batch_size=4).total_batch_size
            4
        """
        size = batch_size_of(self)
        if size is None:
            return None
        for level in _batch_sampler_chain(self):
            if hasattr(level, "split_batches"):
                return size if level.split_batches else size * level.num_processes
        return size

    @property
    def total_dataset_length(self) -> int:
        """Length of the whole dataset (all processes together).

        Example:
            >>> DataLoaderShard(range(8), batch_size=4).total_dataset_length
            8
        """
        total = getattr(self.dataset, "total_length", None)
        return length_of(self.dataset) if total is None else total


class DataLoaderDispatcher(_PreparedDataLoader):
    """A ``DataLoader`` iterated by process 0 only, which sends each process its slice.

    Process 0 loads ``num_processes`` batches (or one batch with ``split_batches``), joins
    them, and broadcasts the result; every process keeps its equal slice (cut by
    ``slice_fn``, default :func:`accel.ops.slice_tensors`). Batches must therefore be tensors
    (in lists, tuples or dicts) of equal size along the first dimension. Unless ``_drop_last``,
    a last batch that does not split evenly is completed with samples of the first batch.
    Use it when loading is expensive or the data can only be read once (streams).

    Example:
        >>> loader = DataLoaderDispatcher(range(6), batch_size=2)  # single process
        >>> [batch.tolist() for batch in loader]
        [[0, 1], [2, 3], [4, 5]]
    """

    def __init__(
        self,
        dataset: Dataset,
        split_batches: bool = False,
        skip_batches: int = 0,
        use_stateful_dataloader: bool = False,
        _drop_last: bool = False,
        _non_blocking: bool = False,
        slice_fn: Callable[..., Any] | None = None,
        torch_device_mesh: Any = None,
        iteration: int = 0,
        **kwargs: Any,
    ) -> None:
        _refuse_stateful(use_stateful_dataloader, type(self).__name__)
        super().__init__(dataset, **kwargs)
        self.use_stateful_dataloader = use_stateful_dataloader
        self.split_batches = split_batches
        self.gradient_state = GradientState()
        self.state = PartialState()
        self._drop_last = _drop_last
        self._non_blocking = _non_blocking
        self.skip_batches = skip_batches
        self.torch_device_mesh = torch_device_mesh
        self.slice_fn = slice_tensors if slice_fn is None else slice_fn
        self._epoch = iteration
        self._batches_yielded = 0
        self.end_of_dataloader = False
        self.remainder = -1

    def _initial_remainder(self) -> int:
        return -1  # known only once the last batch has been seen

    def _load_group(self, source: Iterator[Any] | None) -> tuple[Any, Any]:
        """On process 0, the next global batch; everywhere, its structure (``None``: done)."""
        batch, structure = None, None
        if source is not None:  # process 0 iterates the dataloader
            wanted = 1 if self.split_batches else self.state.num_processes
            parts = []
            for _ in range(wanted):
                try:
                    parts.append(next(source))
                except StopIteration:
                    break
            complete = len(parts) == wanted
            if parts and (complete or not self._drop_last):
                batch = parts[0] if len(parts) == 1 else self._join(parts)
                structure = get_data_structure(batch)
        message = broadcast_object_list([structure], from_process=0)
        return batch, message[0]

    @staticmethod
    def _join(parts: list[Any]) -> Any:
        try:
            return concatenate(parts, dim=0)
        except (RuntimeError, TypeError, ValueError) as error:
            raise RuntimeError(
                "DataLoaderDispatcher joins num_processes batches into one before sending each "
                f"process its slice, and could not join these ({error}). Batches must be tensors "
                "whose shapes differ only in the first dimension. Pass dispatch_batches=False so "
                "each process loads its own batches, or split_batches=True so process 0 loads "
                "one batch and cuts it."
            ) from error

    def __iter__(self) -> Iterator[Any]:
        self.begin()
        try:
            self.set_epoch(self._epoch)
            pending = start_pass(self)
            restore_rng = pending.restore
            skip = self.skip_batches + pending.seen
            state = self.state
            count, rank = state.num_processes, state.process_index
            device = state.device
            source = super().__iter__() if rank == 0 else None
            head = None  # first samples of the pass, to complete an uneven last batch
            before_fetch(self, pending, 0, skip)
            batch, structure = self._load_group(source)
            position = 0
            while structure is not None:
                if rank != 0:
                    batch = initialize_tensors(structure)
                batch = send_to_device(batch, device, non_blocking=self._non_blocking)
                batch = broadcast(batch, from_process=0)
                if head is None and not self._drop_last:
                    head = self.slice_fn(
                        batch, slice(0, count), process_index=rank, num_processes=count
                    )
                observed = find_batch_size(batch)
                share = observed // count
                if position == skip and restore_rng is not None:
                    restore_rng()  # RNG as it was when this batch was next, at save time
                    restore_rng = None
                before_fetch(self, pending, position + 1, skip)
                upcoming, upcoming_structure = self._load_group(source)
                last = upcoming_structure is None
                if last and not self._drop_last and observed % count != 0:
                    batch = concatenate([batch, head], dim=0)
                    share += 1
                mine = slice(rank * share, (rank + 1) * share)
                batch = self.slice_fn(batch, mine, process_index=rank, num_processes=count)
                if last:
                    self.end_of_dataloader = True
                    self.remainder = observed
                if position >= skip:
                    self._batches_yielded += 1
                    yield batch
                position += 1
                batch, structure = upcoming, upcoming_structure
            if restore_rng is not None:  # the pass ended among the skipped batches
                restore_rng()
            finish_pass(self)
        finally:
            self.end()

    def __len__(self) -> int:
        whole = super().__len__()
        if self.split_batches:
            return whole
        if self._drop_last:
            return whole // self.state.num_processes
        return math.ceil(whole / self.state.num_processes)

    @property
    def total_batch_size(self) -> int | None:
        """Samples consumed per step by all processes together (``None`` without a batch size).

        Example:
            >>> DataLoaderDispatcher(range(8), batch_size=4).total_batch_size
            4
        """
        size = batch_size_of(self)
        if size is None:
            return None
        return size if self.split_batches else size * self.state.num_processes

    @property
    def total_dataset_length(self) -> int:
        """Length of the whole dataset.

        Example:
            >>> DataLoaderDispatcher(range(8), batch_size=4).total_dataset_length
            8
        """
        return length_of(self.dataset)


class SkipDataLoader(DataLoaderStateMixin, DataLoader):
    """A ``DataLoader`` that drops the first ``skip_batches`` batches of every pass.

    Prefer :func:`skip_first_batches`, which skips indices without loading the samples when
    the dataset is map-style; this class loads and discards them (needed for streams).

    Example:
        >>> [batch.tolist() for batch in SkipDataLoader(range(6), skip_batches=2, batch_size=2)]
        [[4, 5]]
    """

    def __init__(
        self,
        dataset: Dataset,
        skip_batches: int = 0,
        use_stateful_dataloader: bool = False,
        **kwargs: Any,
    ) -> None:
        _refuse_stateful(use_stateful_dataloader, type(self).__name__)
        super().__init__(dataset, **kwargs)
        self.use_stateful_dataloader = use_stateful_dataloader
        self.skip_batches = skip_batches
        self.gradient_state = GradientState()
        self._drop_last = bool(kwargs.get("drop_last", False))
        self._epoch = 0
        self._batches_yielded = 0
        self.end_of_dataloader = False
        self.remainder = -1

    @property
    def total_batch_size(self) -> int | None:
        """The batch size (this loader does not shard).

        Example:
            >>> SkipDataLoader(range(4), batch_size=2).total_batch_size
            2
        """
        return batch_size_of(self)

    def _initial_remainder(self) -> int:
        return -1

    def __iter__(self) -> Iterator[Any]:
        self.begin()
        try:
            pending = start_pass(self)
            restore_rng = pending.restore
            skip = self.skip_batches + pending.seen
            batches = super().__iter__()
            position = 0
            while True:
                if position == skip and restore_rng is not None:
                    restore_rng()  # RNG as it was when this batch was next, at save time
                    restore_rng = None
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                if position >= skip:
                    self._batches_yielded += 1
                    yield batch
                position += 1
            if restore_rng is not None:  # the pass ended among the skipped batches
                restore_rng()
            finish_pass(self)
        finally:
            self.end()

    def __len__(self) -> int:
        return max(super().__len__() - self.skip_batches, 0)
