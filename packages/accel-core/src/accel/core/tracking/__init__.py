"""Experiment tracking: the trackers behind ``Accelerator(log_with=...)``.

Built in: ``"jsonl"`` (no service, no extra package: one JSON line per ``log`` call under
``logging_dir/project_name/``) and ``"tensorboard"`` (when the ``tensorboard`` package is
installed). Subclass :class:`GeneralTracker` for anything else and pass an instance in
``log_with``. Only the main process writes, unless a tracker sets ``main_process_only = False``.

Example:
    >>> from accel.core.tracking import JSONLTracker
    >>> JSONLTracker.name
    'jsonl'
"""

from __future__ import annotations

from accel.core.tracking.base import GeneralTracker, on_main_process
from accel.core.tracking.builtin import JSONLTracker, TensorBoardTracker
from accel.core.tracking.registry import (
    LOGGER_TYPE_TO_CLASS,
    filter_trackers,
    get_available_trackers,
    register_tracker_class,
)

__all__ = [
    "LOGGER_TYPE_TO_CLASS",
    "GeneralTracker",
    "JSONLTracker",
    "TensorBoardTracker",
    "filter_trackers",
    "get_available_trackers",
    "on_main_process",
    "register_tracker_class",
]
