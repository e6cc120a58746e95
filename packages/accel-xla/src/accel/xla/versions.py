"""Whether the installed torch and torch-xla pair, read from package metadata (no import).

torch-xla X.Y works only with torch X.Y, but its metadata does not pin torch, so pip or uv
happily install, say, torch 2.10 with torch-xla 2.9; importing torch_xla then fails with an
undefined-symbol error that names neither version. These checks say it in one line first.

Example:
    >>> pairing_problem("2.9.0+cu128", "2.9.0") is None
    True
"""

from __future__ import annotations

import importlib.metadata
import re


def release(version: str) -> tuple[int, int]:
    """The ``(major, minor)`` of a version string (local tags such as ``+cu128`` ignored).

    Example:
        >>> release("2.9.0+cu128")
        (2, 9)
    """
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"cannot read a version number from {version!r} (expected e.g. '2.9.0')")
    return int(match.group(1)), int(match.group(2))


def pairing_problem(torch_version: str, torch_xla_version: str) -> str | None:
    """A one-line description of why these versions do not work together, or ``None``.

    Example:
        >>> print(pairing_problem("2.10.0", "2.9.0"))
        torch 2.10.0 and torch-xla 2.9.0 do not pair: torch-xla X.Y needs torch X.Y; install torch==2.9.* to keep torch-xla 2.9.0, or torch-xla==2.10.* to keep torch 2.10.0
    """
    torch_release, xla_release = release(torch_version), release(torch_xla_version)
    if torch_release == xla_release:
        return None
    xla_series = "{}.{}.*".format(*xla_release)
    torch_series = "{}.{}.*".format(*torch_release)
    return (
        f"torch {torch_version} and torch-xla {torch_xla_version} do not pair: torch-xla X.Y "
        f"needs torch X.Y; install torch=={xla_series} to keep torch-xla {torch_xla_version}, "
        f"or torch-xla=={torch_series} to keep torch {torch_version}"
    )


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed.

    Example:
        >>> installed_version("surely-not-installed-accel-dist") is None
        True
    """
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_installed_pair() -> str:
    """Raise ``RuntimeError`` (one line) unless torch-xla is installed and pairs with torch.

    Returns the torch-xla version.

    Example:
        >>> check_installed_pair()  # doctest: +SKIP
        '2.9.0'
    """
    torch_version = installed_version("torch")
    xla_version = installed_version("torch-xla") or installed_version("torch_xla")
    if xla_version is None:
        wanted = "torch-xla=={}.{}.*".format(*release(torch_version)) if torch_version else ""
        raise RuntimeError(
            "torch-xla is not installed in this Python; install the release matching torch "
            f"{torch_version} ({wanted}), e.g. with accel.xla.install_xla()"
        )
    if torch_version is None:
        raise RuntimeError(f"torch-xla {xla_version} is installed but torch is not")
    problem = pairing_problem(torch_version, xla_version)
    if problem is not None:
        raise RuntimeError(problem)
    return xla_version
