"""``tqdm`` progress bars shown by one process per machine, re-exported from
:mod:`accel.state.progress` (where accel's own bars live too).

Example:
    >>> from accel.core.progress import tqdm
    >>> for _ in tqdm(range(3), disable=True):
    ...     pass
"""

from __future__ import annotations

from accel.state.progress import tqdm

__all__ = ["tqdm"]
