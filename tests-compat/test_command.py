"""The ``accelerate`` console script of the compat wheel: ``config default`` writes a file that
``launch`` reads (default location and ``--config_file``), and the way Accelerate users start
CPU jobs (``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu``) starts N CPU processes.

The job is torch-free (it reports the launcher's environment), so this file runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ACCELERATE = Path(sys.executable).parent / "accelerate"
JOB = """
import json, os
keys = ["RANK", "WORLD_SIZE", "ACCEL_MIXED_PRECISION", "ACCEL_USE_CPU"]
os.write(1, ("REPORT " + json.dumps({k: os.environ.get(k) for k in keys}) + "\\n").encode())
"""


def _run(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL", "RANK", "WORLD"))}
    env.update(HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "xdg"), HF_HOME=str(tmp / "hf"), **extra)
    proc = subprocess.run(
        [str(ACCELERATE), *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _reports(proc: subprocess.CompletedProcess) -> list[dict]:
    found = [json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    return sorted(found, key=lambda r: int(r["RANK"] or 0))


def test_config_default_is_read_by_launch_and_cpu_multi_gpu_starts_n_processes(
    tmp_path: Path,
) -> None:
    (tmp_path / "job.py").write_text(JOB)

    written = _run(tmp_path, "config", "default", "--mixed_precision", "bf16")
    default = next((tmp_path / "xdg").rglob("default_config.yaml"))
    assert str(default) in written.stdout + written.stderr
    launched = _run(tmp_path, "launch", "job.py")
    assert str(default) in launched.stderr
    assert [r["ACCEL_MIXED_PRECISION"] for r in _reports(launched)] == ["bf16"]

    _run(tmp_path, "config", "default", "--config_file", "mine.yaml", "--mixed_precision", "fp16")
    launched = _run(tmp_path, "launch", "--config_file", "mine.yaml", "job.py")
    assert [r["ACCEL_MIXED_PRECISION"] for r in _reports(launched)] == ["fp16"]

    launched = _run(
        tmp_path, "launch", "--multi_gpu", "--num_processes", "2", "job.py", ACCELERATE_USE_CPU="1"
    )
    got = _reports(launched)
    assert [(r["RANK"], r["WORLD_SIZE"], r["ACCEL_USE_CPU"]) for r in got] == [
        ("0", "2", "true"),
        ("1", "2", "true"),
    ]
