"""save_state(async_save=True) on 2 processes (see ``workers/async_save_checks.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from background import background
from launching import LaunchResult, declared_checks, run_distributed

pytestmark = pytest.mark.slow

CHECKS = declared_checks("async_save_checks.py")


@background(seconds=11, timeout=150)
def async_save_run(out: Path) -> LaunchResult:
    return run_distributed("async_save_checks.py", timeout=150.0, out_dir=out)


def test_async_save_launch_finished(async_save_run: LaunchResult) -> None:
    assert not async_save_run.timed_out and async_save_run.returncode == 0, (
        async_save_run.diagnostics()
    )
    assert sorted(async_save_run.reports) == [0, 1], async_save_run.diagnostics()


@pytest.mark.parametrize("check", CHECKS)
def test_async_save(async_save_run: LaunchResult, check: str) -> None:
    async_save_run.assert_passed(check, (0, 1))
