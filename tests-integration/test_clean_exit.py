"""A finished job is never reported as failed (issue 13, part 0).

``workers/clean_exit.py`` trains a few steps, prints "done" and returns without
``end_training``; launched with ``accel launch --cpu --num_processes 2`` it must exit 0 every
time, in each mode: DDP, FSDP2, an ``async_save`` still in flight at the end, DeepSpeed
ZeRO-2, and DDP with torch's gloo worker threads starved at the end (Linux). Before
``accel.state.teardown`` a rank sometimes aborted at interpreter exit ("terminate called
without an active exception") and the launcher reported the job failed.

The default run count is small so CI stays fast: ddp 3, starved_gloo_workers 6, the others 1.
The second ddp run destroys the process group itself and the last calls ``end_training``
first, so teardown after an explicit destroy is covered too; every other starved run starts
the process group in the script (accel adopts it). ``ACCEL_IT_EXIT_RUNS=30`` launches every
mode 30 times in a row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from background import SESSION_ENVIRON, background
from launching import LaunchResult, accel_launch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEFAULT_RUNS = {"ddp": 3, "fsdp2": 1, "async_save": 1, "deepspeed": 1, "starved_gloo_workers": 6}
CHECKPOINT_MARKER = "accel_checkpoint.json"  # written when a save_state folder is complete


def _runs(mode: str) -> int:
    # The session's environment: the root conftest removes ACCEL_* variables around each test.
    raw = SESSION_ENVIRON.get("ACCEL_IT_EXIT_RUNS")
    if raw is None:
        return DEFAULT_RUNS[mode]
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"ACCEL_IT_EXIT_RUNS={raw!r}: expected a positive integer")
    return int(raw)


def _problem(run: LaunchResult, mode: str, out_dir: Path) -> str | None:
    if run.timed_out or run.returncode != 0:
        return "did not exit 0"
    for rank in (0, 1):
        if f"done rank {rank}" not in run.stdout:
            return f"rank {rank} never printed 'done'"
    if "terminate called" in run.stderr:
        return "a rank aborted at exit"
    if mode == "async_save" and not (out_dir / "ckpt" / CHECKPOINT_MARKER).is_file():
        return "the asynchronous save in flight at exit was not completed"
    return None


def _launch_mode(mode: str, root: Path) -> list[str]:
    """Launch ``mode`` ``_runs(mode)`` times; returns what went wrong, one entry a failed run."""
    runs = _runs(mode)
    failures = []
    for index in range(runs):
        out_dir = root / f"run{index}"
        args = [mode]
        if mode == "ddp" and index == runs - 1:
            args.append("end_training")
        elif mode == "ddp" and index == 1:
            args.append("destroy_process_group")
        elif mode == "starved_gloo_workers" and index % 2:
            args.append("user_group")
        run = accel_launch("clean_exit.py", args=args, out_dir=out_dir)
        problem = _problem(run, mode, out_dir)
        if problem is not None:
            failures.append(f"run {index + 1}: {problem}\n{run.diagnostics()}")
    return failures


@background(seconds=95, timeout=240 * sum(DEFAULT_RUNS.values()))
def clean_exit_failures(root: Path) -> dict[str, list[str]]:
    """What went wrong in each mode's launches (in the background, see background.py)."""
    return {mode: _launch_mode(mode, root / mode) for mode in DEFAULT_RUNS if _runs_here(mode)}


def _runs_here(mode: str) -> bool:
    # starving threads uses Linux scheduling calls (sched_setaffinity, SCHED_IDLE, /proc)
    return mode != "starved_gloo_workers" or sys.platform.startswith("linux")


@pytest.mark.parametrize("mode", list(DEFAULT_RUNS))
def test_finished_job_exits_zero_every_time(
    mode: str, clean_exit_failures: dict[str, list[str]]
) -> None:
    if not _runs_here(mode):
        pytest.skip(f"{mode} needs Linux scheduling calls (sched_setaffinity, SCHED_IDLE)")
    failures = clean_exit_failures[mode]
    runs = _runs(mode)
    assert not failures, f"{len(failures)} of {runs} {mode} runs failed:\n" + "\n".join(failures)
