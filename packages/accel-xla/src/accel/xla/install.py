"""``install_xla``: install the torch-xla release that pairs with the installed torch."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from accel.xla.versions import installed_version, release


def _installer() -> list[str]:
    """The command that installs packages into this interpreter: pip, else ``uv pip``."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", "install"]
    uv = shutil.which("uv")
    if uv is not None:
        return [uv, "pip", "install", "--python", sys.executable]
    raise RuntimeError(
        f"install_xla: neither pip nor uv is available for {sys.executable}; install pip "
        "(python -m ensurepip) or uv, or install torch-xla with your own tool"
    )


def _run(command: list[str]) -> None:
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"install_xla: {' '.join(command)} failed with exit status {done.returncode}"
        )


def install_xla(upgrade: bool = False, *, dry_run: bool = False) -> list[list[str]]:
    """Install the torch-xla wheels that match the installed torch (same major.minor).

    Accelerate's helper of the same name works only on Google Colab; this one installs into
    the running interpreter anywhere, with pip or (in uv environments, which have no pip)
    ``uv pip``. ``upgrade=True`` first upgrades torch to its newest release, then pairs
    torch-xla with it (there may be no torch-xla release for a brand-new torch yet; the
    installer then says so). ``dry_run=True`` returns the commands without running them (with
    ``upgrade`` the second one pairs with the torch installed now). Returns the commands.

    Example:
        >>> from accel.xla import install_xla
        >>> install_xla(dry_run=True)[-1][-1]  # with torch 2.9 installed
        'torch-xla==2.9.*'
    """
    installer = _installer()
    commands: list[list[str]] = []
    if upgrade:
        commands.append([*installer, "--upgrade", "torch"])
        if not dry_run:
            _run(commands[-1])
    torch_version = installed_version("torch")
    if torch_version is None:
        raise RuntimeError("install_xla: torch is not installed; install torch first")
    commands.append([*installer, "torch-xla=={}.{}.*".format(*release(torch_version))])
    if not dry_run:
        _run(commands[-1])
    return commands
