"""Refuse to run when the real Hugging Face ``accelerate`` is installed too.

The compat wheel and the real ``accelerate`` both provide the top-level ``accelerate``
package; with both present, which one a program gets depends on ``sys.path`` order. Instead of
shadowing the real one silently, importing ``accelerate`` fails with one line naming the other
distribution and where it lives.

Example:
    >>> from accelerate._guard import foreign_distributions
    >>> foreign_distributions()
    []
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

OWN_LABEL = "+accel"


class AccelerateConflictError(ImportError):
    """The real ``accelerate`` (or another distribution of it) is installed beside accel's.

    Example:
        >>> issubclass(AccelerateConflictError, ImportError)
        True
    """


def _provides_accelerate(dist: metadata.Distribution) -> bool:
    if (dist.metadata["Name"] or "").lower() == "accelerate":
        return True
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return "accelerate" in top_level.split()
    return any(str(f).startswith("accelerate/") for f in dist.files or ())


def _candidates(paths: list[str]) -> list[metadata.Distribution]:
    """Installed distributions whose name mentions ``accelerate``, found by listing each
    folder of ``paths`` once (reading every installed distribution's metadata and file list
    cost about 0.5 s of CPU at each ``import accelerate``)."""
    found = []
    for folder in paths:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")) and "accelerate" in name.lower():
                found.append(metadata.PathDistribution(Path(folder or ".", name)))
    return found


def foreign_distributions(paths: list[str] | None = None) -> list[str]:
    """``name version (location)`` of every distribution on ``paths`` (default ``sys.path``)
    that provides ``accelerate`` and is not this compat wheel.

    Only distributions whose name mentions ``accelerate`` (``accelerate``, ``accelerate-kt``,
    ...) are looked at.

    Example:
        >>> foreign_distributions()
        []
    """
    found = []
    for dist in _candidates(sys.path if paths is None else paths):
        name = dist.metadata["Name"] or ""
        version = dist.version or ""
        if name.lower() == "accelerate" and OWN_LABEL in version:
            continue
        if name.lower().startswith("accel-") or not _provides_accelerate(dist):
            continue
        found.append(f"{name} {version} ({dist.locate_file('')})")
    return found


def check_no_real_accelerate() -> None:
    """Raise ``AccelerateConflictError`` if another ``accelerate`` is installed.

    Example:
        >>> check_no_real_accelerate()
    """
    others = foreign_distributions()
    if others:
        raise AccelerateConflictError(
            f"accel's compat `accelerate` and {', '.join(others)} are both installed; "
            "uninstall one of them (the compat wheel replaces accelerate, docs/compat.md)"
        )
