"""The launch helpers of the integration tests clean up after a job that overruns its timeout."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from background import background
from launching import LaunchResult, base_environment, environment_base, run_distributed

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


LAUNCHERS = ("spawn", "torchrun")


def _sleep_past_timeout(
    tmp_path: Path, launcher: Literal["spawn", "torchrun"], environ: dict[str, str]
) -> SleeperRun:
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    out = tmp_path / "out"
    with environment_base(environ):  # this thread starts from the job's environment too
        result = run_distributed(script, nproc=2, timeout=45.0, out_dir=out, launcher=launcher)
    pids = [int(path.read_text()) for path in sorted(out.glob("pid*"))]
    deadline = time.monotonic() + 5.0
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return SleeperRun(result, pids, [pid for pid in pids if _alive(pid)])


@background(seconds=45, timeout=60)
def sleeper_runs(tmp_path: Path) -> dict[str, SleeperRun]:
    """A 2-process job that sleeps past its 45 s timeout, under each launcher at once (mostly
    idle: runs in the background); its workers are looked for right after the launch returns."""
    with ThreadPoolExecutor(len(LAUNCHERS)) as threads:
        runs = {
            launcher: threads.submit(
                _sleep_past_timeout, tmp_path / launcher, launcher, base_environment()
            )
            for launcher in LAUNCHERS
        }
        return {launcher: run.result() for launcher, run in runs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_timed_out_job_leaves_no_worker_alive(
    sleeper_runs: dict[str, SleeperRun], launcher: str
) -> None:
    """torchrun and the spawner start workers in their own sessions; a timeout must still kill
    every one."""
    sleeper_run = sleeper_runs[launcher]
    assert sleeper_run.result.timed_out
    assert len(sleeper_run.pids) == 2, sleeper_run.result.diagnostics()
    assert sleeper_run.alive == []
