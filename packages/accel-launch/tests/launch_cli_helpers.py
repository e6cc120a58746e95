"""Helpers of the CLI tests: run the real ``accel`` console script in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

BIN = Path(sys.executable).parent
ACCEL = BIN / "accel"
ACCELERATE = BIN / "accelerate"


def clean_env(home: Path) -> dict[str, str]:
    """``os.environ`` without launcher/config variables, with every config location under ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCEL_", "ACCELERATE_"))
        and k not in ("HF_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"), HF_HOME=str(home / "hf"))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def accel(
    *args: str,
    home: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
):
    """Run ``accel *args``; returns the CompletedProcess (text)."""
    command = [str(ACCEL)] if ACCEL.exists() else [sys.executable, "-m", "accel.launch.cli"]
    return subprocess.run(
        [*command, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env or clean_env(home),
        timeout=timeout,
    )


def accel_in_process(*args: str, home: Path, monkeypatch, capsys) -> SimpleNamespace:
    """``accel *args`` through ``cli.main`` in this process, with the environment
    :func:`clean_env` gives the console script; ``returncode``/``stdout``/``stderr`` as from
    :func:`accel`. For error messages, where a fresh interpreter adds nothing: the tests that
    run the console script prove its wiring (exit status, streams)."""
    from accel.launch.cli import main

    env = clean_env(home)
    for key in set(os.environ) - set(env):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)
