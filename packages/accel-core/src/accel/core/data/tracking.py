"""What a prepared dataloader tells ``GradientState`` while it runs, and sampler look-ups."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from contextlib import suppress
from typing import Any

from torch.utils.data import BatchSampler

from accel.state import GradientState

__all__ = ["DataLoaderStateMixin", "batch_size_of", "get_sampler", "length_of"]


class DataLoaderStateMixin:
    """Iteration bookkeeping shared by the prepared dataloaders.

    Attributes read through ``GradientState`` while the loader is the active one:

    - ``end_of_dataloader``: ``True`` while the last batch of the pass is being processed.
    - ``remainder``: how many genuine samples the last global batch holds when the dataset
      does not fill it (the rest of that batch repeats samples from the start); ``-1`` when
      unknown (unsized dataset, ``drop_last``).

    For a later exact resume, ``_epoch`` counts completed passes and ``_batches_yielded``
    counts the batches handed out in the current pass.

    Example:
        >>> from accel.state import GradientState
        >>> class Loader(DataLoaderStateMixin):
        ...     dataset, total_batch_size, _drop_last = range(10), 4, False
        ...     gradient_state = GradientState()
        >>> loader = Loader()
        >>> loader.begin()
        >>> (GradientState().remainder, GradientState().end_of_dataloader)
        (2, False)
        >>> loader.end()
    """

    end_of_dataloader: bool = False
    remainder: int = -1
    _epoch: int = 0
    _batches_yielded: int = 0
    # Set by ``Accelerator.load_state`` (or ``skip_first_batches``): a ``PendingResume``
    # telling the next pass where the checkpoint's pass stood and what its order was drawn
    # from. Map-style passes skip the seen batches' indices; iterable ones load and drop them.
    _resume: Any = None
    # The order sources of the pass in progress as they were at its start (``capture_pass_rng``).
    _pass_rng: Any = None
    # The global RNG states just before the loader read its latest batch (``passes.before_fetch``).
    _fetch_rng: Any = None
    # A ``skip_first_batches`` copy points back to the loader it was made from (a weakref), and
    # the loader to its newest copy: saves see the copy's position, the copy's passes count as
    # the loader's epochs.
    _origin: Any = None
    _active_copy: Any = None
    _skip_each_pass: int = 0  # batches a skip_first_batches copy leaves out of every pass
    # What the loader using this mixin provides (a DataLoader subclass sets them).
    dataset: Any
    gradient_state: GradientState
    total_batch_size: int | None
    _drop_last: bool

    def _take_resume(self) -> Any:
        """The pending resume (consumed: only the next pass resumes), or ``None``."""
        pending, self._resume = self._resume, None
        return pending

    def reset(self) -> None:
        """Forget the end-of-pass flag and the remainder.

        Example:
            >>> loader = DataLoaderStateMixin()
            >>> loader.reset()
            >>> loader.remainder
            -1
        """
        self.end_of_dataloader = False
        self.remainder = -1

    def _initial_remainder(self) -> int:
        if self._drop_last:
            return -1
        with suppress(Exception):
            size = self.total_batch_size
            if not size:
                return -1
            length = getattr(self.dataset, "total_dataset_length", None)
            if length is None:
                length = length_of(self.dataset)
            return length % size
        return -1

    def begin(self) -> None:
        """Start a pass: reset the flags, compute the remainder, become the active dataloader.

        Example:
            >>> # called by ``__iter__`` of the prepared dataloaders
        """
        self.reset()
        self.remainder = self._initial_remainder()
        self.gradient_state.add_dataloader(self)

    def end(self) -> None:
        """Finish a pass: stop being the active dataloader.

        Example:
            >>> # called by ``__iter__`` of the prepared dataloaders, also when the loop breaks
        """
        self.gradient_state.remove_dataloader(self)

    @property
    def iteration(self) -> int:
        """The epoch the next pass runs (Accelerate's name for ``_epoch``).

        Example:
            >>> DataLoaderStateMixin().iteration
            0
        """
        return self._epoch

    @iteration.setter
    def iteration(self, value: int) -> None:
        self._epoch = value


def batch_size_of(loader: Any) -> int | None:
    """The loader's batch size, else its sampler's or batch sampler's; ``None`` if none has one.

    Example:
        >>> from torch.utils.data import BatchSampler, DataLoader, SequentialSampler
        >>> batches = BatchSampler(SequentialSampler(range(6)), batch_size=3, drop_last=False)
        >>> batch_size_of(DataLoader(range(6), batch_sampler=batches))
        3
    """
    if loader.batch_size is not None:
        return loader.batch_size
    for level in (loader.sampler, loader.batch_sampler):
        size = getattr(level, "batch_size", None)
        if size is not None:
            return size
    return None


def length_of(obj: object, what: str = "dataset") -> int:
    """``len(obj)``, or a ``TypeError`` naming ``what`` and its class when it has no length
    (an iterable dataset or a batch sampler without ``__len__``).

    Example:
        >>> length_of(range(5))
        5
    """
    if not isinstance(obj, Sized):
        raise TypeError(f"the {what} ({type(obj).__name__}) has no length (no __len__)")
    return len(obj)


def _batch_sampler_chain(dataloader: Any) -> Iterator[Any]:
    """The loader's batch sampler, then what it wraps (``.batch_sampler``), outermost first."""
    sampler = getattr(dataloader, "sampler", None)
    level = sampler if isinstance(sampler, BatchSampler) else dataloader.batch_sampler
    seen: set[int] = set()
    while level is not None and id(level) not in seen:
        seen.add(id(level))
        yield level
        level = getattr(level, "batch_sampler", None)


def get_sampler(dataloader: Any) -> Any:
    """The index sampler that feeds a dataloader's batches (``None`` if it has none).

    Looks through sharding and skipping wrappers down to the innermost batch sampler.

    Example:
        >>> from torch.utils.data import DataLoader, RandomSampler
        >>> isinstance(get_sampler(DataLoader(range(4), shuffle=True)), RandomSampler)
        True
    """
    found = None
    for level in _batch_sampler_chain(dataloader):
        found = getattr(level, "sampler", found)
    return found


def set_epoch_everywhere(dataloader: Any, epoch: int) -> None:
    """Give ``epoch`` to every sampler of the loader that takes one, else to its dataset."""
    told: set[int] = set()
    for level in _batch_sampler_chain(dataloader):
        for candidate in (level, getattr(level, "sampler", None)):
            if (
                candidate is not None
                and hasattr(candidate, "set_epoch")
                and id(candidate) not in told
            ):
                told.add(id(candidate))
                candidate.set_epoch(epoch)
    if not told and hasattr(dataloader.dataset, "set_epoch"):
        dataloader.dataset.set_epoch(epoch)


def replace_sampler(dataloader: Any, sampler: Any) -> None:
    """Make ``sampler`` feed the loader's batches, at every level of its batch-sampler chain."""
    for level in _batch_sampler_chain(dataloader):
        level.sampler = sampler
