"""``wait_for_everyone`` as a function: the barrier of the current process group.

Example:
    >>> from accel.state.barrier import wait_for_everyone
    >>> wait_for_everyone()  # one process: returns at once
"""

from __future__ import annotations

from accel.state.partial_state import PartialState


def wait_for_everyone() -> None:
    """Block until every process of the job reaches this call (no-op on one process).

    Same as ``PartialState().wait_for_everyone()``.

    Example:
        >>> wait_for_everyone()
    """
    PartialState().wait_for_everyone()
