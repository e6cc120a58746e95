"""install_xla: which commands it would run (dry run; installing is left to real users)."""

from __future__ import annotations

import importlib.util
import sys

from accel.xla import install_xla
from accel.xla.versions import installed_version, release


def test_pairs_torch_xla_with_the_installed_torch() -> None:
    major, minor = release(installed_version("torch") or "")
    commands = install_xla(dry_run=True)
    assert len(commands) == 1
    assert commands[0][-1] == f"torch-xla=={major}.{minor}.*"
    if importlib.util.find_spec("pip") is not None:
        assert commands[0][:4] == [sys.executable, "-m", "pip", "install"]
    else:  # uv environments have no pip
        assert commands[0][1:5] == ["pip", "install", "--python", sys.executable]


def test_upgrade_upgrades_torch_first() -> None:
    commands = install_xla(upgrade=True, dry_run=True)
    assert len(commands) == 2
    assert commands[0][-2:] == ["--upgrade", "torch"]
    assert commands[1][-1].startswith("torch-xla==")
