"""The strategy of a single process: no wrapping, no communication."""

from __future__ import annotations

from accel.core.strategies.base import TrainingStrategy


class SingleDeviceStrategy(TrainingStrategy):
    """One process on one device; every hook is the default.

    Example:
        >>> SingleDeviceStrategy.name
        'single'
    """

    name = "single"
