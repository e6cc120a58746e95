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

from importlib import metadata

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


def foreign_distributions() -> list[str]:
    """``name version (location)`` of every installed distribution providing ``accelerate``
    that is not this compat wheel.

    Example:
        >>> isinstance(foreign_distributions(), list)
        True
    """
    found = []
    for dist in metadata.distributions():
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
