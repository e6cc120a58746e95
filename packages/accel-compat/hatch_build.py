"""This wheel's hatchling metadata hook: the workspace's shared one, ``tools/release``.

An sdist carries a copy in ``_release/`` (with ``VERSION``), so it builds on its own.

Example:
    >>> get_metadata_hook().PLUGIN_NAME  # doctest: +SKIP
    'accel-release'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (
    _HERE / "_release" / "metadata_hook.py",
    _HERE.parents[1] / "tools" / "release" / "metadata_hook.py",
)


def get_metadata_hook() -> type:
    """The hook class hatchling instantiates (it looks this function up by name)."""
    path = next((p for p in _CANDIDATES if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"accel's metadata hook is in none of {[str(p) for p in _CANDIDATES]}; build from "
            "the workspace or from an sdist made by `uv build`"
        )
    spec = importlib.util.spec_from_file_location("accel_release_metadata_hook", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AccelMetadataHook
