"""Experiment tracking: the trackers behind ``Accelerator(log_with=...)``.

Built in: ``"jsonl"`` (no service, no extra package: one JSON line per ``log`` call under
``logging_dir/project_name/``), ``"tensorboard"`` (``accel-core[trackers]``), ``"wandb"``
(``accel-core[wandb]``) and ``"mlflow"`` (``accel-core[mlflow]``); the optional libraries are
imported only when a run starts. Subclass :class:`GeneralTracker` for anything else and pass an instance in
``log_with``. Only the main process writes, unless a tracker sets ``main_process_only = False``.

Example:
    >>> from accel.core.tracking import JSONLTracker
    >>> JSONLTracker.name
    'jsonl'
"""

from __future__ import annotations

from accel.core.tracking.base import GeneralTracker, on_main_process
from accel.core.tracking.builtin import JSONLTracker, TensorBoardTracker
from accel.core.tracking.mlflow_tracker import MLflowTracker
from accel.core.tracking.registry import (
    LOGGER_TYPE_TO_CLASS,
    filter_trackers,
    get_available_trackers,
    register_tracker_class,
)
from accel.core.tracking.wandb_tracker import WandBTracker

__all__ = [
    "LOGGER_TYPE_TO_CLASS",
    "GeneralTracker",
    "JSONLTracker",
    "MLflowTracker",
    "TensorBoardTracker",
    "WandBTracker",
    "filter_trackers",
    "get_available_trackers",
    "on_main_process",
    "register_tracker_class",
]
