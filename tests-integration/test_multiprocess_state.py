"""accel.state in real 2-process jobs: torchrun (gloo, CPU) and MPI-style plain ``python``."""

from __future__ import annotations

import pytest
from launching import LaunchResult, declared_checks

pytestmark = pytest.mark.slow

RANKS = (0, 1)
# check name -> reason, for accel-state bugs reported but not yet fixed (strict xfail)
KNOWN_BUGS: dict[str, str] = {}


def _params(script: str) -> list:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]))
        if name in KNOWN_BUGS
        else name
        for name in declared_checks(script)
    ]


def test_state_launch_finished(state_run: LaunchResult) -> None:
    assert not state_run.timed_out and state_run.returncode == 0, state_run.diagnostics()
    assert sorted(state_run.reports) == list(RANKS), state_run.diagnostics()


@pytest.mark.parametrize("check", _params("state_checks.py"))
def test_state(state_run: LaunchResult, check: str) -> None:
    state_run.assert_passed(check, RANKS)


def test_print_only_on_main_process(state_run: LaunchResult) -> None:
    state_run.assert_passed("print_on_main_process_only", RANKS)
    lines = [line for line in state_run.stdout.splitlines() if "ACCEL-IT-PRINT" in line]
    assert lines == ["ACCEL-IT-PRINT from rank 0"], state_run.diagnostics()


@pytest.mark.parametrize("launch", ["openmpi_run", "pmi_run"])
@pytest.mark.parametrize("check", declared_checks("mpi_checks.py"))
def test_mpi_style_environment(request: pytest.FixtureRequest, launch: str, check: str) -> None:
    result: LaunchResult = request.getfixturevalue(launch)
    result.assert_passed(check, RANKS)


@pytest.mark.parametrize("launch", ["openmpi_run", "pmi_run"])
def test_mpi_style_launch_finished(request: pytest.FixtureRequest, launch: str) -> None:
    result: LaunchResult = request.getfixturevalue(launch)
    assert not result.timed_out and result.returncode == 0, result.diagnostics()
