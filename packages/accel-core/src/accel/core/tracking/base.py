"""The tracker interface every tracker implements."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from accel.state import PartialState

F = TypeVar("F", bound=Callable[..., Any])


def on_main_process(method: F) -> F:
    """Run a tracker method on the main process only (unless ``main_process_only`` is False).

    Example:
        >>> class Printer(GeneralTracker):
        ...     name, requires_logging_directory, tracker = "printer", False, None
        ...     @on_main_process
        ...     def log(self, values, step=None, **kwargs):
        ...         print(values)
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "main_process_only", True) and not PartialState().is_main_process:
            return None
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class GeneralTracker:
    """Base class of trackers; subclass it to plug any logging service into ``log_with``.

    A subclass defines ``name`` (str, the key used by ``get_tracker``, ``init_kwargs`` and
    ``log_kwargs``), ``requires_logging_directory`` (bool) and ``tracker`` (the underlying run or
    writer object, usually a property), and overrides what it needs of ``start``,
    ``store_init_configuration``, ``log`` and ``finish``. ``main_process_only = True`` (the
    default) is honoured by methods decorated with :func:`on_main_process`.

    Example:
        >>> class ListTracker(GeneralTracker):
        ...     name = "list"
        ...     requires_logging_directory = False
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.rows = []
        ...     @property
        ...     def tracker(self):
        ...         return self.rows
        ...     def log(self, values, step=None, **kwargs):
        ...         self.rows.append((step, values))
        >>> t = ListTracker(); t.log({"loss": 1.0}, step=0); t.rows
        [(0, {'loss': 1.0})]
    """

    main_process_only = True
    # declared for type checkers; a subclass sets them (checked by __init__)
    name: str
    requires_logging_directory: bool

    def __init__(self, _blank: bool = False) -> None:
        if _blank:
            return
        missing = [
            attr
            for attr in ("name", "requires_logging_directory")
            if not hasattr(type(self), attr) and attr not in vars(self)
        ]
        if "tracker" not in dir(self):
            missing.append("tracker")
        if missing:
            raise TypeError(
                f"{type(self).__name__} must define {', '.join(missing)} to be a tracker "
                "(see GeneralTracker's docstring)"
            )

    def start(self) -> None:
        """Create the run (called by ``init_trackers``, after the process group exists)."""

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """Record ``values`` (hyperparameters: bool, str, int, float or None) for the run."""

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Record ``values`` (str, int or float) at ``step``."""

    def finish(self) -> None:
        """Flush and close the run (called by ``end_training``)."""
