"""``accel test``: the self-check that accel-core registers as a subcommand of ``accel``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ACCEL = Path(sys.executable).with_name("accel")

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(ACCEL), "test", *args], capture_output=True, text=True, env=env, timeout=240
    )


def test_accel_test_passes_on_two_cpu_processes() -> None:
    done = _run("--cpu", "--num_processes", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("process group: 2 process(es), MULTI_CPU", "collectives:", "training:"):
        assert f"ok    {check}" in done.stdout
    assert "success, this setup works" in done.stdout


def test_accel_test_reports_a_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("distributed_type: MULTI_CPU\nnum_processes: two\n")
    done = _run("--config_file", str(config))
    assert done.returncode == 1
    assert "num_processes" in done.stderr
    assert "FAILED" in done.stdout


def test_accel_test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from accel.launch.cli import main\n"
        "try:\n"
        "    main(['test', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--num_processes" in done.stdout
    assert "TORCH False" in done.stdout
