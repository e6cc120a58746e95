"""``get_logger``: a logger that knows which process it runs in.

By default a record is emitted by the main process only; ``main_process_only=False`` lets
every process log, ``in_order=True`` makes them take turns by rank. Messages start with
``[RANK <process index>]``, as Accelerate's do.

Example:
    >>> from accel.core.process_logging import get_logger
    >>> from accel.state import PartialState
    >>> _ = PartialState()
    >>> logger = get_logger("my_script", log_level="INFO")
    >>> logger.info("starting")  # printed once, by the main process
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import MutableMapping
from typing import Any

from accel.state import PartialState


class MultiProcessAdapter(logging.LoggerAdapter):
    """A ``LoggerAdapter`` whose calls take ``main_process_only`` (default True) and
    ``in_order`` (default False). The process state must exist before the first record
    (``PartialState()`` or an ``Accelerator``), as in Accelerate.

    Example:
        >>> adapter = MultiProcessAdapter(logging.getLogger("demo"), {})
        >>> adapter.warning("seen once", main_process_only=True)
    """

    @staticmethod
    def _should_log(main_process_only: bool) -> bool:
        return not main_process_only or PartialState().is_main_process

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
        if PartialState._shared_state == {}:
            raise RuntimeError(
                f"logger {self.logger.name!r} needs the process state before logging: create "
                "PartialState() or an Accelerator first"
            )
        if in_order:
            state = PartialState()
            for rank in range(state.num_processes):
                if rank == state.process_index:
                    msg_, kwargs_ = self.process(msg, kwargs)
                    self.logger.log(level, msg_, *args, **kwargs_)
                state.wait_for_everyone()
            return
        if self._should_log(main_process_only):
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
        return f"[RANK {PartialState().process_index}] {msg}", kwargs

    @functools.lru_cache(None)  # noqa: B019 - one warning per distinct message, like warnings
    def warning_once(self, *args: Any, **kwargs: Any) -> None:
        """``warning`` that emits each distinct message once per process lifetime.

        Example:
            >>> get_logger("demo").warning_once("deprecated option")
        """
        self.warning(*args, **kwargs)


def get_logger(name: str, log_level: str | int | None = None) -> MultiProcessAdapter:
    """A multi-process-aware logger for ``name``; ``log_level`` (or ``ACCELERATE_LOG_LEVEL``)
    sets the level of the underlying logger and of its root.

    Example:
        >>> logger = get_logger(__name__, log_level="DEBUG")
        >>> logger.logger.level == logging.DEBUG
        True
    """
    if log_level is None:
        log_level = os.environ.get("ACCELERATE_LOG_LEVEL") or os.environ.get("ACCEL_LOG_LEVEL")
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
