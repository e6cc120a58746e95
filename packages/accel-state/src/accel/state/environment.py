"""Context managers that change ``os.environ`` for a block and restore it afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def patch_environment(**kwargs: Any) -> Iterator[None]:
    """Set environment variables (keys upper-cased, values turned to ``str``) for a block.

    Variables that existed before get their old value back; new ones are removed.

    Example:
        >>> import os
        >>> with patch_environment(accel_demo="1"):
        ...     os.environ["ACCEL_DEMO"]
        '1'
        >>> "ACCEL_DEMO" in os.environ
        False
    """
    saved: dict[str, str | None] = {}
    for key, value in kwargs.items():
        key = key.upper()
        saved.setdefault(key, os.environ.get(key))
        os.environ[key] = str(value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextmanager
def clear_environment() -> Iterator[None]:
    """Run a block with an empty ``os.environ``; the whole environment comes back afterwards.

    Example:
        >>> import os
        >>> with clear_environment():
        ...     len(os.environ)
        0
    """
    saved = dict(os.environ)
    os.environ.clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
