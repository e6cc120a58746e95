"""The version clients read: the Accelerate API level this wheel maps + the accel release.

The wheel's metadata carries it (``1.15.0+accel<VERSION>``, rendered at build time from the
workspace's single ``VERSION`` by ``tools/release/metadata_hook.py``); ``__version__`` is read
back from there, so the two never disagree.

Example:
    >>> from accelerate._version import API_LEVEL, __version__
    >>> __version__.startswith(API_LEVEL + "+accel")
    True
"""

from __future__ import annotations

from importlib import metadata

API_LEVEL = "1.15.0"


def _installed_version() -> str:
    try:
        return metadata.version("accelerate")
    except metadata.PackageNotFoundError:
        raise ImportError(
            "accel's compat `accelerate` package has no installed metadata (found on sys.path "
            "as plain files?); install its wheel: uv build --wheel packages/accel-compat"
        ) from None


__version__ = _installed_version()
