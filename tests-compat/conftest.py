"""The compat client tests run only in .venv-compat (accel's `accelerate` wheel, no real one).

Build that environment with ``tools/compat/make_env.sh`` and run
``.venv-compat/bin/python -m pytest tests-compat``. Anywhere else (the dev environment has the
real Accelerate) every test here is skipped with one line saying so. Reference numbers come
from running the same client script in the dev environment (``uv run``) inside the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "scripts"
COMPAT_BIN = Path(sys.executable).parent


def _in_compat_env() -> bool:
    if importlib.util.find_spec("accelerate") is None:
        return False
    from importlib.metadata import version

    return "+accel" in version("accelerate")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _in_compat_env():
        return
    skip = pytest.mark.skip(
        reason="compat client tests need .venv-compat (tools/compat/make_env.sh), not the dev env"
    )
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


def _environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCEL_", "ACCELERATE_", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"))
        and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"})
    env.update(extra or {})
    return env


# What a gloo rank prints when torch's C++ runtime tears its process group down at exit.
EXIT_ABORT = "terminate called without an active exception"


def _run(cmd: list[str], extra: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, env=_environ(extra), capture_output=True, text=True, timeout=900
    )


def _failure(cmd: list[str], proc: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def run_json(cmd: list[str], out: Path, extra: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` (its script writes JSON to ``out``) from the repo root; return that JSON.

    Example:
        >>> run_json([sys.executable, "-c", "..."], Path("o.json"))  # doctest: +SKIP
    """
    proc = _run(cmd, extra)
    assert proc.returncode == 0 and out.exists(), _failure(cmd, proc)
    return json.loads(out.read_text())


def run_reference_json(cmd: list[str], out: Path, extra: dict[str, str] | None = None) -> dict:
    """``run_json`` for a multi-process run of the real Accelerate.

    Accelerate leaves its gloo process group to torch's teardown at exit, where a rank can
    abort after the script finished (SIGABRT, the launcher reports failure; accel destroys its
    groups at exit, see docs/migration.md). Such a run counts when its JSON was written and the
    abort is the only error; accel's own runs go through ``run_json`` and must exit 0.

    Example:
        >>> run_reference_json([*reference_launch(2, 29500), "s.py"], Path("o.json"))  # doctest: +SKIP
    """
    proc = _run(cmd, extra)
    aborted_at_exit = proc.returncode != 0 and EXIT_ABORT in proc.stderr
    assert (proc.returncode == 0 or aborted_at_exit) and out.exists(), _failure(cmd, proc)
    if aborted_at_exit:
        print(f"the reference run finished, then a rank aborted at exit: {' '.join(cmd)}")
    return json.loads(out.read_text())


def reference_python() -> list[str]:
    """The dev environment's interpreter (real Accelerate) through uv, from the repo root.

    Example:
        >>> reference_python()[:2]
        ['uv', 'run']
    """
    uv = shutil.which("uv") or "uv"
    return [uv, "run", "--no-sync", "--directory", str(ROOT), "python"]


def reference_launch(num_processes: int, port: int) -> list[str]:
    """The real ``accelerate launch`` on gloo CPU processes (needs ``ACCELERATE_USE_CPU=1``).

    Example:
        >>> reference_launch(2, 29500)[-2:]
        ['--main_process_port', '29500']
    """
    uv = shutil.which("uv") or "uv"
    return [
        uv,
        "run",
        "--no-sync",
        "--directory",
        str(ROOT),
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--main_process_port",
        str(port),
    ]


def compat_tool(name: str) -> str:
    """A console script of .venv-compat (``accel`` or ``accelerate``).

    Example:
        >>> compat_tool("accel").endswith("accel")
        True
    """
    return str(COMPAT_BIN / name)
