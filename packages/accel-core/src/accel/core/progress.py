"""``tqdm`` progress bars shown by one process only.

Example:
    >>> from accel.core.progress import tqdm
    >>> for _ in tqdm(range(3), disable=True):
    ...     pass
"""

from __future__ import annotations

from typing import Any

from accel.state import PartialState
from accel.state.availability import is_package_available


def tqdm(*args: Any, main_process_only: bool = True, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(*args, **kwargs)``, disabled on every process but each machine's
    main one when ``main_process_only`` (the default). Needs the ``tqdm`` package.

    Example:
        >>> bar = tqdm(range(2), disable=True)
        >>> list(bar)
        [0, 1]
    """
    if not is_package_available("tqdm"):
        raise ImportError("accel.core.progress.tqdm needs the tqdm package: pip install tqdm")
    if args and isinstance(args[0], bool):
        raise TypeError(
            f"tqdm(...) got {args[0]!r} as its first argument; pass main_process_only="
            f"{args[0]!r} as a keyword (Accelerate's old positional form is not accepted)"
        )
    from tqdm.auto import tqdm as auto_tqdm

    if main_process_only and not kwargs.get("disable", False):
        kwargs["disable"] = PartialState().local_process_index != 0
    return auto_tqdm(*args, **kwargs)
