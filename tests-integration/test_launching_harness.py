"""The launch helpers of the integration tests clean up after a job that overruns its timeout."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from background import background
from launching import LaunchResult, run_distributed

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


@dataclass
class SleeperRun:
    """The timed-out launch, its workers' pids, and those alive 5 s after the launch returned."""

    result: LaunchResult
    pids: list[int]
    alive: list[int]


@background(seconds=50, timeout=60)
def sleeper_run(tmp_path: Path) -> SleeperRun:
    """A 2-process job that sleeps past its 45 s timeout (mostly idle: runs in the background);
    its workers are looked for right after the launch returns."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    out = tmp_path / "out"
    result = run_distributed(script, nproc=2, timeout=45.0, out_dir=out)
    pids = [int(path.read_text()) for path in sorted(out.glob("pid*"))]
    deadline = time.monotonic() + 5.0
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return SleeperRun(result, pids, [pid for pid in pids if _alive(pid)])


@pytest.mark.slow
def test_a_timed_out_job_leaves_no_worker_alive(sleeper_run: SleeperRun) -> None:
    """torchrun starts workers in their own sessions; a timeout must still kill every one."""
    assert sleeper_run.result.timed_out
    assert len(sleeper_run.pids) == 2, sleeper_run.result.diagnostics()
    assert sleeper_run.alive == []
