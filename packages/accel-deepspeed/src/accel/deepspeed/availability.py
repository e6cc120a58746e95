"""Importing deepspeed, with a one-line answer when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install 'accel-core[deepspeed]'"


def require_deepspeed() -> ModuleType:
    """The ``deepspeed`` module; ``ImportError`` with the install command if it is missing.

    Example:
        >>> require_deepspeed().__name__  # doctest: +SKIP
        'deepspeed'
    """
    try:
        return importlib.import_module("deepspeed")
    except ImportError as error:
        if error.name not in (None, "deepspeed"):
            raise  # deepspeed is installed but one of its own imports failed: show that
        raise ImportError(f"DeepSpeed is not installed: {INSTALL_HINT}") from None
