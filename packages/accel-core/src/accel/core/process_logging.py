"""``get_logger`` and its adapter, re-exported from :mod:`accel.state.process_logging`
(the lowest wheel that logs) so every accel wheel's warnings are printed once per job.

Example:
    >>> from accel.core.process_logging import get_logger
    >>> logger = get_logger("my_script", log_level="INFO")
"""

from __future__ import annotations

from accel.state.process_logging import MultiProcessAdapter, get_logger

__all__ = ["MultiProcessAdapter", "get_logger"]
