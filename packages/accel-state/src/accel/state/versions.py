"""The accel wheels of one environment belong to one release: check it at import.

Every accel wheel pins its siblings to its own version (``accel-core 0.2.0`` requires
``accel-state==0.2.0``). A resolver enforces that, but ``pip install --no-deps``, a
half-finished upgrade or an old wheel copied in can still mix releases, and mixed releases
fail later in confusing ways. :func:`require_siblings` turns that into one clear
``ImportError`` naming both versions and the command that fixes it.

Example:
    >>> require_siblings("accel-state")  # no sibling pins: nothing to check
"""

from __future__ import annotations

import re
from importlib import metadata

# A sibling pin in METADATA, without marker (extras are not checked): "Requires-Dist: accel-ops==0.2.0"
_PIN = re.compile(r"^Requires-Dist: (accel-[a-z-]+)(?:\[[^\]]*\])? ?==([^\s;]+)$", re.MULTILINE)
# Installed folders are named "<name>-<version>.dist-info"; reading the name is cheap where
# parsing METADATA for .version costs milliseconds per wheel.
_DIST_INFO = re.compile(r"^[^-]+-([^-]+)\.dist-info$")


def _version(dist: metadata.Distribution) -> str:
    path = getattr(dist, "_path", None)
    match = _DIST_INFO.match(getattr(path, "name", ""))
    return match.group(1) if match else dist.version


class MixedReleaseError(ImportError):
    """Installed accel wheels come from different releases.

    Example:
        >>> issubclass(MixedReleaseError, ImportError)
        True
    """


def require_siblings(dist: str) -> None:
    """Raise :class:`MixedReleaseError` unless the siblings ``dist`` pins are installed at
    exactly those versions. Does nothing when ``dist`` itself is not installed (a source tree
    on ``sys.path``).

    Example:
        >>> require_siblings("accel-ops")  # the dev workspace: one release
    """
    try:
        installed = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return
    own = _version(installed)
    for sibling, wanted in sorted(_PIN.findall(installed.read_text("METADATA") or "")):
        try:
            found: str | None = _version(metadata.distribution(sibling))
        except metadata.PackageNotFoundError:
            found = None
        if found != wanted:
            have = "is not installed" if found is None else f"{found} is installed"
            raise MixedReleaseError(
                f"{dist} {own} needs {sibling}=={wanted} but {sibling} {have}; install one "
                f"release of accel: pip install '{dist}=={own}' '{sibling}=={wanted}'"
            )
