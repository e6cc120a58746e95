"""``get_logger``: a logger that knows which process it runs in.

By default a record is emitted by the main process only; ``main_process_only=False`` lets
every process log, ``in_order=True`` makes them take turns by rank. Messages start with
``[RANK <process index>]``, as Accelerate's do. accel's own modules log through it, so a
warning of a 2-process job is printed once. Before the process state exists, the rank comes
from the launcher's ``RANK`` variable (Accelerate raises instead), so library code may log
without creating the state.

Example:
    >>> from accel.state.process_logging import get_logger
    >>> from accel.state import PartialState
    >>> _ = PartialState()
    >>> logger = get_logger("my_script", log_level="INFO")
    >>> logger.info("starting")  # printed once, by the main process
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import MutableMapping
from typing import Any

from accel.state import env
from accel.state.partial_state import PartialState


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer (it is set by the launcher)") from None


def process_index() -> int:
    """This process's global rank: the state's when it exists, else ``RANK``, else 0.

    Example:
        >>> process_index() >= 0
        True
    """
    if PartialState._shared_state:
        return PartialState().process_index
    return _env_int("RANK", 0)


class MultiProcessAdapter(logging.LoggerAdapter):
    """A ``LoggerAdapter`` whose calls take ``main_process_only`` (default True) and
    ``in_order`` (default False). Without a process state the rank is read from ``RANK``;
    ``in_order`` needs the state in a multi-process job.

    Example:
        >>> adapter = MultiProcessAdapter(logging.getLogger("demo"), {})
        >>> adapter.warning("seen once", main_process_only=True)
    """

    @staticmethod
    def _should_log(main_process_only: bool) -> bool:
        return not main_process_only or process_index() == 0

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` at ``level`` on the processes selected by ``main_process_only``/``in_order``.

        Example:
            >>> get_logger("demo").log(logging.INFO, "hello", main_process_only=False)
        """
        main_process_only = kwargs.pop("main_process_only", True)
        in_order = kwargs.pop("in_order", False)
        kwargs.setdefault("stacklevel", 2)
        if not self.isEnabledFor(level):
            return
        if in_order and PartialState._shared_state == {} and _env_int("WORLD_SIZE", 1) > 1:
            raise RuntimeError(
                f"logger {self.logger.name!r} needs the process state to log in_order: create "
                "PartialState() or an Accelerator first"
            )
        if in_order and PartialState._shared_state:
            state = PartialState()
            for rank in range(state.num_processes):
                if rank == state.process_index:
                    msg_, kwargs_ = self.process(msg, kwargs)
                    self.logger.log(level, msg_, *args, **kwargs_)
                state.wait_for_everyone()
            return
        if self._should_log(main_process_only and not in_order):
            msg_, kwargs_ = self.process(msg, kwargs)
            self.logger.log(level, msg_, *args, **kwargs_)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix the message with the process index, as Accelerate does (``[RANK 0] ...``).

        Example:
            >>> get_logger("demo").process("m", {})
            ('[RANK 0] m', {})
        """
        return f"[RANK {process_index()}] {msg}", kwargs

    @functools.lru_cache(None)  # noqa: B019 - one warning per distinct message, like warnings
    def warning_once(self, *args: Any, **kwargs: Any) -> None:
        """``warning`` that emits each distinct message once per process lifetime.

        Example:
            >>> get_logger("demo").warning_once("deprecated option")
        """
        self.warning(*args, **kwargs)


def get_logger(name: str, log_level: str | int | None = None) -> MultiProcessAdapter:
    """A multi-process-aware logger for ``name``; ``log_level`` (or ``ACCEL_LOG_LEVEL``, else
    ``ACCELERATE_LOG_LEVEL``) sets the level of the underlying logger and of its root.

    Example:
        >>> logger = get_logger(__name__, log_level="DEBUG")
        >>> logger.logger.level == logging.DEBUG
        True
    """
    if log_level is None:
        log_level = env.read_env(env.LOG_LEVEL) or None
    logger = logging.getLogger(name)
    if log_level is not None:
        level = log_level.upper() if isinstance(log_level, str) else log_level
        try:
            logger.setLevel(level)
        except (ValueError, TypeError):
            raise ValueError(
                f"log_level={log_level!r} is not a logging level; use DEBUG, INFO, WARNING, "
                "ERROR, CRITICAL or an int"
            ) from None
        logger.root.setLevel(level)
    return MultiProcessAdapter(logger, {})


def library_logger(name: str) -> MultiProcessAdapter:
    """The logger accel's own modules warn through: main process only by default, and,
    unlike :func:`get_logger`, it never changes any logger's level.

    Example:
        >>> logger = library_logger("accel.big_model.demo")
        >>> logger.warning("printed once per job")
    """
    return MultiProcessAdapter(logging.getLogger(name), {})


def warn_on_main_process(
    message: str, category: type[Warning] = UserWarning, stacklevel: int = 1
) -> None:
    """``warnings.warn(message, category, stacklevel)`` on the process of global rank 0 only,
    so a multi-process job shows accel's warning once (rank from the state, else ``RANK``).

    Example:
        >>> warn_on_main_process("x is ignored with y", stacklevel=2)  # doctest: +SKIP
    """
    if process_index() == 0:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
