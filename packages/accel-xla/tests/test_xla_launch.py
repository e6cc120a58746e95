"""``accel launch --tpu`` end to end on XLA's CPU device (one device: one process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "workers" / "report.py"


def _launch(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL_", "ACCELERATE_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "accel.launch.cli", "launch", *arguments],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )


def _report(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0][len("REPORT ") :])


def test_tpu_flag_runs_one_process_on_the_xla_device() -> None:
    report = _report(_launch("--tpu", "--num_processes", "1", str(WORKER)))
    assert report["distributed_type"] == "XLA"
    assert report["device"] == "xla:0"
    assert report["strategy"] == "XLAStrategy"
    assert (report["num_processes"], report["process_index"]) == (1, 0)


def test_config_file_xla_spawns_through_xla_multiprocessing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: XLA\n"
                      "mixed_precision: bf16\n")  # fmt: skip
    # No --num_processes: one process per XLA device, started by xmp.spawn (here: 1 device).
    report = _report(_launch("--config_file", str(config), str(WORKER)))
    assert report["distributed_type"] == "XLA"
    assert report["device"] == "xla:0"
    assert report["mixed_precision"] == "bf16"
    assert report["num_processes"] == 1


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "REPORT" not in done.stdout
    return lines[0]


def test_tpu_without_pjrt_device_is_one_line() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "PJRT_DEVICE"}
    done = subprocess.run(
        [sys.executable, "-m", "accel.launch.cli", "launch", "--tpu", str(WORKER)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )
    line = _one_line_error(done)
    assert line.startswith("accel launch --tpu: error: accel launch --tpu runs on XLA, but ")
    assert "PJRT_DEVICE is not set; set PJRT_DEVICE to the device XLA should drive" in line


def test_tpu_with_no_python_is_one_line() -> None:
    line = _one_line_error(_launch("--tpu", "--no_python", "true"))
    assert "--tpu (from flag --tpu) runs a Python script" in line
    assert "--no_python cannot be used with it" in line


@pytest.mark.parametrize("value", ["0", "two"])
def test_runner_rejects_a_bad_process_count(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "accel.xla.launch", "--num_processes", value, str(WORKER)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = _one_line_error(done)
    assert f"--num_processes={value!r} must be a positive integer or 'all'" in line
