"""accel.ops collectives in a real 2-process job (gloo, CPU)."""

from __future__ import annotations

import pytest
from launching import LaunchResult, declared_checks

pytestmark = pytest.mark.slow

RANKS = (0, 1)


def test_ops_launch_finished(ops_run: LaunchResult) -> None:
    assert not ops_run.timed_out and ops_run.returncode == 0, ops_run.diagnostics()
    assert sorted(ops_run.reports) == list(RANKS), ops_run.diagnostics()


@pytest.mark.parametrize("check", declared_checks("ops_checks.py"))
def test_ops(ops_run: LaunchResult, check: str) -> None:
    ops_run.assert_passed(check, RANKS)
