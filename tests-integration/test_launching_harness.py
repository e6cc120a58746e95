"""The launch helpers of the integration tests clean up after a job that overruns its timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from launching import run_distributed

SLEEPER = """
import os, pathlib, time
out = pathlib.Path(os.environ["ACCEL_IT_OUT"])
(out / f"pid{os.environ['RANK']}").write_text(str(os.getpid()))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_a_timed_out_job_leaves_no_worker_alive(tmp_path: Path) -> None:
    """torchrun starts workers in their own sessions; a timeout must still kill every one."""
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    out = tmp_path / "out"
    result = run_distributed(script, nproc=2, timeout=45.0, out_dir=out)
    assert result.timed_out
    pids = [int((out / f"pid{rank}").read_text()) for rank in range(2)]
    deadline = time.monotonic() + 5.0
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if _alive(pid)] == []
