"""save_model under FSDP2, save and trackers on 2 processes (see ``workers/saving_checks.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from background import background
from launching import LaunchResult, declared_checks, run_distributed

pytestmark = pytest.mark.slow

CHECKS = declared_checks("saving_checks.py")


@background(seconds=21, timeout=150)
def saving_run(out: Path) -> LaunchResult:
    return run_distributed("saving_checks.py", timeout=150.0, out_dir=out)


def test_saving_launch_finished(saving_run: LaunchResult) -> None:
    assert not saving_run.timed_out and saving_run.returncode == 0, saving_run.diagnostics()
    assert sorted(saving_run.reports) == [0, 1], saving_run.diagnostics()


@pytest.mark.parametrize("check", CHECKS)
def test_saving(saving_run: LaunchResult, check: str) -> None:
    saving_run.assert_passed(check, (0, 1))
