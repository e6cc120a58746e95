"""accel.core.data in a real 2-process job (gloo, CPU): one launch, many checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from background import background
from launching import LaunchResult, declared_checks, run_distributed

pytestmark = pytest.mark.slow

RANKS = (0, 1)
WORKER = "data_checks.py"


@background(seconds=7, timeout=150)
def data_run(out: Path) -> LaunchResult:
    """The report of one run of the data worker on 2 processes."""
    return run_distributed(WORKER, nproc=2, timeout=150.0, out_dir=out)


def test_data_launch_finished(data_run: LaunchResult) -> None:
    assert not data_run.timed_out and data_run.returncode == 0, data_run.diagnostics()
    assert sorted(data_run.reports) == list(RANKS), data_run.diagnostics()


@pytest.mark.parametrize("check", declared_checks(WORKER))
def test_data(data_run: LaunchResult, check: str) -> None:
    data_run.assert_passed(check, RANKS)


def test_both_ranks_agree_on_shuffled_order(data_run: LaunchResult) -> None:
    orders = [data_run.value("epoch_orders", rank) for rank in RANKS]
    assert orders[0] is not None and orders[0] == orders[1], data_run.diagnostics()
