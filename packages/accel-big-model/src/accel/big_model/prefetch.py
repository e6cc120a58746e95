"""Prefetching for offloaded forwards: while one module runs, the next one's weights load.

One background thread, at most one module ahead. Which module comes next is learned while
the model runs (the successor of each offloaded module in the last forward), seeded with
module registration order so the first forward benefits too. A wrong guess costs only a
wasted read: the module that actually runs loads its own weights synchronously, and the
weights themselves are identical either way, so outputs are bitwise the same.

Switch it off with ``prefetch=False`` on the dispatch functions or ``ACCEL_OFFLOAD_PREFETCH=0``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

ENV_VAR = "ACCEL_OFFLOAD_PREFETCH"


def prefetch_enabled(prefetch: bool | None = None) -> bool:
    """Whether offload prefetching is on: ``prefetch`` if given, else ``ACCEL_OFFLOAD_PREFETCH``
    (default on).

    Example:
        >>> prefetch_enabled(False)
        False
    """
    if prefetch is not None:
        return bool(prefetch)
    from accel.state.env import read_flag

    return read_flag("OFFLOAD_PREFETCH", default=True)


def touch(tensor: torch.Tensor) -> None:
    """Fault in the pages of a (possibly memory-mapped) CPU tensor by reading one byte each.

    Example:
        >>> touch(torch.ones(3))
    """
    if tensor.numel() == 0 or tensor.device.type != "cpu":
        return
    try:
        flat = tensor.detach().reshape(-1).view(torch.uint8)
        flat[::4096].sum()
    except RuntimeError:
        pass


class OffloadPrefetcher:
    """Coordinates background loading between the offloading hooks of one model.

    Hooks call :meth:`take` when they need their weights and :meth:`schedule_after` once they
    have them; the hook on the model's root marks forward boundaries (:meth:`start_pass`,
    :meth:`end_pass`) so nothing stays prefetched once a forward returns.

    Example:
        >>> p = OffloadPrefetcher()
        >>> p.take(object()) is None
        True
        >>> p.close()
    """

    def __init__(self) -> None:
        self.root: Any = None
        self._next: dict[Any, Any] = {}
        self._last: Any = None
        self._pending: tuple[Any, Future] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def seed(self, hooks: Iterable[Any]) -> None:
        """Guess the order of the offloaded hooks (before any forward has been seen)."""
        hooks = list(hooks)
        for current, following in itertools.pairwise(hooks):
            self._next.setdefault(current, following)

    def start_pass(self) -> None:
        """A forward of the whole model begins."""
        self._last = None
        self._drop()

    def end_pass(self) -> None:
        """A forward of the whole model ended: forget the position, free any prefetched layer."""
        self._last = None
        self._drop()

    def _drop(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].cancel()

    def take(self, hook: Any) -> Any:
        """The prefetched weights of ``hook`` (``None`` if not prefetched or failed)."""
        if self._last is not None and self._last is not hook:
            self._next[self._last] = hook
        self._last = hook
        pending = self._pending
        if pending is None:
            return None
        owner, future = pending
        if owner is hook:
            self._pending = None
            try:
                return future.result()
            except Exception:
                return None  # the synchronous load reports the error
        if owner is not self._next.get(hook):
            self._drop()
        return None

    def schedule_after(self, hook: Any) -> None:
        """Start loading the weights of the module expected after ``hook``."""
        following = self._next.get(hook)
        if following is None or self._closed:
            return
        if self._pending is not None and self._pending[0] is following:
            return
        self._drop()
        job: Callable[[], Any] | None = following.prefetch_job()
        if job is None:
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="accel-offload-prefetch"
                )
            self._pending = (following, self._executor.submit(job))

    def forget(self, hook: Any) -> None:
        """Stop prefetching for ``hook`` (it is being removed)."""
        if self._pending is not None and self._pending[0] is hook:
            self._drop()
        self._next.pop(hook, None)
        for key in [k for k, v in self._next.items() if v is hook]:
            del self._next[key]

    def close(self) -> None:
        """Stop the background thread and drop everything prefetched. Idempotent."""
        self._closed = True
        self._drop()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
