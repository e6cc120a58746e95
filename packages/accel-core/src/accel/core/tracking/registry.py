"""Which trackers exist, which are usable here, and turning ``log_with`` into a list."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from accel.core.tracking.base import GeneralTracker
from accel.core.tracking.builtin import JSONLTracker, TensorBoardTracker
from accel.core.tracking.mlflow_tracker import MLflowTracker
from accel.core.tracking.wandb_tracker import WandBTracker
from accel.state import LoggerType

LOGGER_TYPE_TO_CLASS: dict[str, type[GeneralTracker]] = {
    "jsonl": JSONLTracker,
    str(LoggerType.TENSORBOARD): TensorBoardTracker,
    str(LoggerType.WANDB): WandBTracker,
    str(LoggerType.MLFLOW): MLflowTracker,
}

# The package each tracker imports when it starts (None: nothing beyond accel-core) ...
_REQUIRES: dict[str, str | None] = {
    "jsonl": None,
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
}
# ... and the accel-core extra that installs it.
_EXTRAS: dict[str, str] = {"tensorboard": "trackers", "wandb": "wandb", "mlflow": "mlflow"}


def register_tracker_class(cls: type[GeneralTracker], package: str | None = None) -> None:
    """Make ``cls`` selectable by its ``name`` in ``log_with`` (``package``: import it needs).

    Example:
        >>> class Mine(GeneralTracker):
        ...     name, requires_logging_directory, tracker = "mine", False, None
        >>> register_tracker_class(Mine)
        >>> "mine" in get_available_trackers()
        True
    """
    if not (isinstance(cls, type) and issubclass(cls, GeneralTracker)):
        raise TypeError(f"register_tracker_class needs a GeneralTracker subclass, got {cls!r}")
    LOGGER_TYPE_TO_CLASS[str(cls.name)] = cls
    _REQUIRES[str(cls.name)] = package
    _EXTRAS.pop(str(cls.name), None)


def _usable(name: str) -> bool:
    package = _REQUIRES.get(name)
    return package is None or importlib.util.find_spec(package) is not None


def get_available_trackers() -> list[str]:
    """Names of the trackers that can run in this environment.

    Example:
        >>> "jsonl" in get_available_trackers()
        True
    """
    return [name for name in LOGGER_TYPE_TO_CLASS if _usable(name)]


def filter_trackers(
    log_with: Any, logging_dir: str | os.PathLike | None = None
) -> list[str | GeneralTracker]:
    """Normalize ``log_with`` to a list of tracker names and tracker instances.

    Accepts a name, a :class:`~accel.state.LoggerType`, a :class:`GeneralTracker` instance or a
    list of them; ``"all"`` means every available tracker (plus the instances given). Repeats
    are dropped. Raises ``ValueError`` for an unknown name, a known tracker whose package is
    missing, or a tracker that needs a logging directory when there is none.

    Example:
        >>> filter_trackers(["jsonl", "jsonl"], logging_dir="runs")
        ['jsonl']
    """
    if log_with is None:
        return []
    items = list(log_with) if isinstance(log_with, list | tuple) else [log_with]
    chosen: list[str | GeneralTracker] = [i for i in items if isinstance(i, GeneralTracker)]
    names = [str(i) for i in items if not isinstance(i, GeneralTracker)]
    if str(LoggerType.ALL) in names:
        wanted = get_available_trackers()
    else:
        wanted = []
        for name in names:
            if name not in LOGGER_TYPE_TO_CLASS:
                known = sorted({*LOGGER_TYPE_TO_CLASS, "all"})
                other = [str(t) for t in LoggerType if str(t) not in known]
                hint = (
                    f" ({name!r} is an Accelerate tracker accel does not ship; wrap it in a "
                    "GeneralTracker subclass and pass an instance)"
                    if name in other
                    else ""
                )
                raise ValueError(f"log_with: unknown tracker {name!r}; choose from {known}{hint}")
            if not _usable(name):
                extra = _EXTRAS.get(name)
                install = f"'accel-core[{extra}]'" if extra else str(_REQUIRES[name])
                raise ValueError(
                    f"log_with: tracker {name!r} needs the {_REQUIRES[name]!r} package, which is "
                    f"not installed (pip install {install})"
                )
            wanted.append(name)
    for name in dict.fromkeys(wanted):
        if _needs_directory(LOGGER_TYPE_TO_CLASS[name]) and logging_dir is None:
            env = getattr(LOGGER_TYPE_TO_CLASS[name], "store_env_var", None)
            alternative = f", or set {env}" if env else ""
            raise ValueError(
                f"log_with: tracker {name!r} writes files and needs a logging directory; pass "
                f"project_dir= or ProjectConfiguration(logging_dir=...) to Accelerator"
                f"{alternative}"
            )
        chosen.append(name)
    return chosen


def _needs_directory(cls: type[GeneralTracker]) -> bool:
    """``requires_logging_directory``, unless the tracker's ``store_env_var`` names a store."""
    env = getattr(cls, "store_env_var", None)
    return bool(cls.requires_logging_directory) and not (env and os.environ.get(env))
