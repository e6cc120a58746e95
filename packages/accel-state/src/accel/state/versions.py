"""The accel wheels of one environment belong to one release: check it at import.

Every accel wheel pins its siblings to its own version (``accel-core 0.2.0`` requires
``accel-state==0.2.0``). A resolver enforces that, but ``pip install --no-deps``, a
half-finished upgrade or an old wheel copied in can still mix releases, and mixed releases
fail later in confusing ways. :func:`require_siblings` turns that into one clear
``ImportError`` naming both versions and the command that fixes it.

It reads the ``*.dist-info`` folder names on ``sys.path`` and the pinning wheel's METADATA
text, without importing :mod:`importlib.metadata`: the torch-free ``accel`` command pays
about a millisecond, not the tens of milliseconds that import costs.

Example:
    >>> require_siblings("accel-state")  # no sibling pins: nothing to check
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache

# A sibling pin in METADATA, without marker (extras are not checked): "Requires-Dist: accel-ops==0.2.0"
_PIN = re.compile(r"^Requires-Dist: (accel-[a-z-]+)(?:\[[^\]]*\])? ?==([^\s;]+)$", re.MULTILINE)
# Installers name the folder "<normalized_name>-<version>.dist-info" (PEP 427 / 491).
_DIST_INFO = re.compile(r"^(accel_[a-z0-9_]+)-([^-]+)\.dist-info$", re.IGNORECASE)


class MixedReleaseError(ImportError):
    """Installed accel wheels come from different releases.

    Example:
        >>> issubclass(MixedReleaseError, ImportError)
        True
    """


@cache
def _installed(path: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """accel distribution -> (version, dist-info folder), the first on ``path`` winning."""
    found: dict[str, tuple[str, str]] = {}
    for entry in path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing folder
            continue
        for name in names:
            match = _DIST_INFO.match(name)
            if match:
                dist = match.group(1).lower().replace("_", "-")
                found.setdefault(dist, (match.group(2), os.path.join(entry, name)))
    return found


def require_siblings(dist: str) -> None:
    """Raise :class:`MixedReleaseError` unless the siblings ``dist`` pins are installed at
    exactly those versions. Does nothing when ``dist`` itself is not installed (a source tree
    on ``sys.path``).

    Example:
        >>> require_siblings("accel-ops")  # the dev workspace: one release
    """
    installed = _installed(tuple(sys.path))
    if dist not in installed:
        return
    own, folder = installed[dist]
    try:
        with open(os.path.join(folder, "METADATA"), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return
    for sibling, wanted in sorted(_PIN.findall(text)):
        found = installed.get(sibling, (None, ""))[0]
        if found != wanted:
            have = "is not installed" if found is None else f"{found} is installed"
            raise MixedReleaseError(
                f"{dist} {own} needs {sibling}=={wanted} but {sibling} {have}; install one "
                f"release of accel: pip install '{dist}=={own}' '{sibling}=={wanted}'"
            )
