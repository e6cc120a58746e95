"""``accel.core.logging``: where Accelerate users look for ``get_logger`` (``accelerate.logging``).

Example:
    >>> from accel.core.logging import get_logger
    >>> logger = get_logger(__name__)
    >>> logger.info("printed by the main process only")
"""

from __future__ import annotations

from accel.state.process_logging import MultiProcessAdapter, get_logger

__all__ = ["MultiProcessAdapter", "get_logger"]
