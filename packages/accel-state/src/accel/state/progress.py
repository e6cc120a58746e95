"""Progress bars for long work, shown by one process per machine.

Two entry points:

- :func:`tqdm`: Accelerate's public wrapper (``main_process_only=True`` by default), for
  users' own loops;
- :func:`progress_bar` / :func:`report_done`: what accel's own long operations use
  (loading checkpoint shards, saving models and states, estimate-memory). They show a bar
  only where a person watches: when stderr is a terminal, or when ``ACCEL_PROGRESS=1``;
  never with ``ACCEL_PROGRESS=0``, never on a process whose local rank is not 0. Looking at
  the rank never creates the process state (these run in standalone inference too).

A silent bar is a tiny object with the same methods, so loops cost nothing extra.

Example:
    >>> for shard in progress_bar(["a", "b"], desc="Loading checkpoint shards", unit="shard"):
    ...     pass
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from accel.state.env import PROGRESS_VAR, str_to_bool

PROGRESS_ENV = PROGRESS_VAR


def progress_enabled() -> bool:
    """Whether accel's own bars are wanted: ``ACCEL_PROGRESS`` if set, else stderr is a TTY.

    Example:
        >>> import os
        >>> os.environ["ACCEL_PROGRESS"] = "0"
        >>> progress_enabled()
        False
        >>> del os.environ["ACCEL_PROGRESS"]
    """
    value = os.environ.get(PROGRESS_ENV)
    if value is not None and value.strip() != "":
        return str_to_bool(value, source=PROGRESS_ENV)
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def local_process_index() -> int:
    """This process's index on its machine, without creating the process state.

    The state's value when it exists, else ``LOCAL_RANK`` (set by launchers), else 0.

    Example:
        >>> local_process_index() >= 0
        True
    """
    from accel.state.partial_state import PartialState

    if PartialState._shared_state:
        return PartialState().local_process_index
    text = os.environ.get("LOCAL_RANK", "0").strip() or "0"
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"LOCAL_RANK={text!r} is not an integer (it is set by the launcher)"
        ) from None


def _tqdm_class() -> Any:
    try:
        from tqdm.auto import tqdm as auto_tqdm
    except ImportError:
        return None
    return auto_tqdm


def tqdm(*args: Any, main_process_only: bool = True, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(*args, **kwargs)``, disabled on every process but each machine's
    main one when ``main_process_only`` (Accelerate's signature). ``ACCEL_PROGRESS=0``
    silences it too.

    Example:
        >>> bar = tqdm(range(2), disable=True)
        >>> list(bar)
        [0, 1]
    """
    auto_tqdm = _tqdm_class()
    if auto_tqdm is None:
        raise ImportError("accel's tqdm needs the tqdm package: pip install tqdm")
    if args and isinstance(args[0], bool):
        raise ValueError(
            f"tqdm(...) got {args[0]!r} as its first argument; pass main_process_only="
            f"{args[0]!r} as a keyword (the old positional form is not accepted)"
        )
    disable = kwargs.pop("disable", False)
    if not disable and os.environ.get(PROGRESS_ENV, "").strip() != "":
        disable = not progress_enabled()
    if main_process_only and not disable:
        disable = local_process_index() != 0
    return auto_tqdm(*args, **kwargs, disable=disable)


class SilentBar:
    """What :func:`progress_bar` returns when no bar is shown: the same calls, no output.

    Example:
        >>> with SilentBar([1, 2]) as bar:
        ...     bar.update(5)
        ...     list(bar)
        [1, 2]
    """

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self) -> SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        """Nothing to draw."""

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Nothing to draw."""

    def close(self) -> None:
        """Nothing to close."""


def should_show() -> bool:
    """Whether this process draws accel's bars now (wanted, and local rank 0).

    Example:
        >>> isinstance(should_show(), bool)
        True
    """
    return progress_enabled() and local_process_index() == 0 and _tqdm_class() is not None


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    nbytes: bool = False,
    leave: bool = True,
) -> Any:
    """A bar over ``iterable`` (or updated by hand up to ``total``) for accel's long work.

    ``nbytes=True`` counts bytes and shows MB and MB/s; ``leave=False`` erases the bar when it
    ends. Shown only when :func:`should_show`; otherwise a :class:`SilentBar`.

    Example:
        >>> with progress_bar(desc="Saving state", total=10, nbytes=True) as bar:
        ...     bar.update(10)
    """
    if not should_show():
        return SilentBar(iterable)
    options: dict[str, Any] = {"desc": desc, "total": total, "unit": unit, "leave": leave}
    options["dynamic_ncols"] = True
    if nbytes:
        options.update(unit="B", unit_scale=True, unit_divisor=1000)
    return _tqdm_class()(iterable, **options)


def report_done(what: str, nbytes: int | None = None, started: float | None = None) -> None:
    """One short line on stderr when a long background job ends (shown as bars are).

    Example:
        >>> report_done("checkpoint written", nbytes=10**9, started=time.monotonic() - 2)
    """
    if not should_show():
        return
    text = f"accel: {what}"
    if nbytes is not None and started is not None:
        seconds = max(time.monotonic() - started, 1e-9)
        text += f" ({nbytes / 1e6:.1f} MB in {seconds:.1f}s, {nbytes / 1e6 / seconds:.1f} MB/s)"
    print(text, file=sys.stderr, flush=True)
