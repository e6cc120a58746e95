"""The bookkeeping of one pass of a prepared dataloader: where it starts (a resumed pass
starts after the batches the checkpoint's run already used), the RNG states recorded before
each batch is read, and the epoch count once the pass is complete.

The prepared loaders (:mod:`accel.core.data.loaders`) call these from ``__iter__``; the
attributes they keep are declared on :class:`~accel.core.data.tracking.DataLoaderStateMixin`.

Example:
    >>> import torch
    >>> from accel.core.data import DataLoaderShard
    >>> loader = DataLoaderShard(range(4), batch_size=2)
    >>> start_pass(loader).seen
    0
    >>> finish_pass(loader)
    >>> loader.iteration
    1
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from accel.core.data.resume import (
    PendingResume,
    capture_global_rng_states,
    capture_pass_rng,
    restore_pass_rng,
    set_global_rng_states,
)

__all__ = ["ResumeIndexSkip", "before_fetch", "finish_pass", "start_pass"]


def start_pass(loader: Any) -> PendingResume:
    """Begin a pass of ``loader`` before it draws its order: put back the order sources of a
    pass being resumed, record them (a save in this pass stores them), set the position.
    Returns the pending resume (an empty one when the pass starts from its first batch).

    Example:
        >>> from accel.core.data import DataLoaderShard
        >>> loader = DataLoaderShard(range(4), batch_size=2)
        >>> loader._resume = PendingResume(seen=1)
        >>> start_pass(loader).seen, loader._batches_yielded
        (1, 1)
    """
    pending = loader._take_resume()
    if pending is not None and pending.pass_rng is not None:
        restore_pass_rng(loader, pending.pass_rng)
    loader._pass_rng = capture_pass_rng(loader)
    loader._fetch_rng = None
    if pending is None:  # a skip_first_batches copy skips on every pass, as Accelerate's does
        pending = PendingResume(seen=loader._skip_each_pass)
    loader._batches_yielded = pending.seen
    return pending


def before_fetch(loader: Any, pending: PendingResume, fetched: int, skip: int) -> None:
    """Called right before the loader reads batch number ``fetched`` of the pass: record the
    global RNG states (a save after the batch before stores them: what that read drew from),
    and, when it is the first batch a resumed pass uses, put back the saved run's.

    Example:
        >>> from accel.core.data import DataLoaderShard
        >>> loader = DataLoaderShard(range(4), batch_size=2)
        >>> before_fetch(loader, PendingResume(), 0, 0)
        >>> "torch" in loader._fetch_rng
        True
    """
    if fetched == skip and pending.fetch_rng is not None:
        set_global_rng_states(pending.fetch_rng)
    loader._fetch_rng = capture_global_rng_states()


def finish_pass(loader: Any) -> None:
    """A pass is complete: the next one is the following epoch (also for the loader a
    ``skip_first_batches`` copy was made from).

    Example:
        >>> from accel.core.data import DataLoaderShard
        >>> loader = DataLoaderShard(range(4), batch_size=2)
        >>> finish_pass(loader); loader.iteration
        1
    """
    loader._epoch += 1
    origin = loader._origin() if loader._origin is not None else None
    if origin is not None:
        origin._epoch = max(origin._epoch, loader._epoch)


class ResumeIndexSkip:
    """The index sampler of a resumed pass: leaves out the indices of the batches used before
    the checkpoint, so those batches are never loaded.

    How many to leave out is read from ``loader._skip_indices`` (then cleared) when iteration
    actually starts: torch's multi-worker iterator calls ``iter`` on its sampler twice and
    keeps it for the later passes of persistent workers, which must skip nothing.

    Example:
        >>> from accel.core.data import DataLoaderShard
        >>> loader = DataLoaderShard(range(6), batch_size=2)
        >>> loader._skip_indices = 2
        >>> list(ResumeIndexSkip(loader.batch_sampler, loader))
        [[4, 5]]
    """

    def __init__(self, sampler: Any, loader: Any) -> None:
        self.sampler = sampler
        self.loader = loader

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        skip, self.loader._skip_indices = self.loader._skip_indices, 0
        batches = iter(self.sampler)  # the order is drawn on the first step
        for _ in itertools.islice(batches, skip):
            pass
        hook, self.loader._on_first_unused = self.loader._on_first_unused, None
        if hook is not None:
            hook()  # the first unused batch is read next
        yield from batches
