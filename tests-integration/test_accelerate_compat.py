"""The same 2-process scenario under accel and under the real Accelerate gives the same results.

Both runs use the same 2-process launch (``launching.run_distributed``) with
``ACCELERATE_USE_CPU=1`` and ``PartialState(cpu=True)``.
"""

from __future__ import annotations

import pytest
from launching import LaunchResult, declared_checks

pytestmark = pytest.mark.slow

RANKS = (0, 1)
STEPS = [step for step in declared_checks("compat_scenario.py") if step != "state_info"]
# Where accel deliberately differs from Accelerate 1.15: step -> (accel's, Accelerate's) result
# for rank 0 and 1 alike.
INTENDED_DIFFERENCES = {
    # Accelerate flattens every gathered object as if it were a list, so a dict turns into
    # its keys; accel returns one entry per process for anything that is not a list/tuple.
    "gather_object_dict": (
        {
            "seq": "list",
            "items": [
                {"dict": "dict", "items": [["rank", 0]]},
                {"dict": "dict", "items": [["rank", 1]]},
            ],
        },
        {"seq": "list", "items": ["rank", "rank"]},
    ),
}


def _info(result: LaunchResult, rank: int) -> dict:
    return dict(result.value("state_info", rank)["items"])


@pytest.mark.parametrize("launch", ["compat_accel_run", "compat_accelerate_run"])
def test_scenario_ran_in_one_gloo_group(request: pytest.FixtureRequest, launch: str) -> None:
    result: LaunchResult = request.getfixturevalue(launch)
    result.assert_finished(RANKS, reference=launch == "compat_accelerate_run")
    for rank in RANKS:
        result.assert_passed("state_info", RANKS)
        info = _info(result, rank)
        assert info["distributed_type"] == "MULTI_CPU", info
        assert info["backend"] == "gloo", info
        assert (info["num_processes"], info["process_index"]) == (2, rank), info
        assert info["torch_world_size"] == 2, info
        # Accelerate reports torch.device("cpu:0"), accel torch.device("cpu").
        assert info["device"].split(":")[0] == "cpu", info


@pytest.mark.parametrize("step", STEPS)
def test_same_result_as_accelerate(
    compat_accel_run: LaunchResult, compat_accelerate_run: LaunchResult, step: str
) -> None:
    compat_accel_run.assert_passed(step, RANKS)
    compat_accelerate_run.assert_passed(step, RANKS)
    for rank in RANKS:
        ours = compat_accel_run.value(step, rank)
        theirs = compat_accelerate_run.value(step, rank)
        if step in INTENDED_DIFFERENCES:
            assert (ours, theirs) == INTENDED_DIFFERENCES[step], (rank, ours, theirs)
        else:
            assert ours == theirs, f"rank {rank}:\n  accel:      {ours}\n  accelerate: {theirs}"
