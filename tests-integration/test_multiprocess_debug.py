"""Debug mode: collectives with disagreeing inputs raise on every process, promptly.

Run twice: with ``ACCEL_DEBUG_MODE=1``, and with Accelerate's ``ACCELERATE_DEBUG_MODE=1`` in a
job whose process group the script started itself (``PartialState`` must adopt it).
"""

from __future__ import annotations

import pytest
from launching import LaunchResult, declared_checks

pytestmark = pytest.mark.slow

RANKS = (0, 1)
LAUNCHES = ["debug_run", "debug_alias_preinit_run"]
PREINIT_ONLY = {"existing_group_adopted"}
# A mismatch is detected by one small exchange; a hang would show up as the group's 60 s
# timeout or the launch's timeout. Generous for a loaded 2-core machine, far below either.
PROMPT_SECONDS = 15.0


def _cases() -> list:
    return [
        pytest.param(launch, check, id=f"{launch}-{check}")
        for launch in LAUNCHES
        for check in declared_checks("debug_checks.py")
        if launch == "debug_alias_preinit_run" or check not in PREINIT_ONLY
    ]


@pytest.mark.parametrize("launch", LAUNCHES)
def test_debug_launch_finished_without_hang(request: pytest.FixtureRequest, launch: str) -> None:
    result: LaunchResult = request.getfixturevalue(launch)
    assert not result.timed_out, result.diagnostics()
    assert result.returncode == 0, result.diagnostics()


@pytest.mark.parametrize(("launch", "check"), _cases())
def test_debug(request: pytest.FixtureRequest, launch: str, check: str) -> None:
    result: LaunchResult = request.getfixturevalue(launch)
    result.assert_passed(check, RANKS)
    if check.endswith("_raises"):
        for rank in RANKS:
            seconds = result.seconds(check, rank)
            assert seconds is not None and seconds < PROMPT_SECONDS, (
                f"rank {rank} took {seconds}s to raise in {check}"
            )
