"""N-D parallelism on real gloo CPU processes: one launch of 2 processes (FSDP2 over
``dp_shard``, TP on an MLP and on a tiny transformers LLaMA, TP save/resume, gather, batches,
invalid configurations), one of 4 (HSDP 2x2, ``dp_shard`` 2 x ``tp`` 2); DeepSpeed ZeRO-2 with
Ulysses sequence parallelism (``sp_size=2``, ``workers/sp_checks.py``: training, save/load,
``gather_for_metrics``) runs on 2 processes in the DeepSpeed launch (``deepspeed_run``, after
the ZeRO checks of test_deepspeed_distributed), and ``sp_size=2`` x 2 data-parallel groups in
a 4-process DeepSpeed launch (``deepspeed_sp4_run``, ``workers/sp4_checks.py``).
Each worker rank also trains the 1-process reference, so the numbers are compared inside one
launch.
"""

from __future__ import annotations

import pytest
from launching import LaunchResult, declared_checks

pytestmark = pytest.mark.slow

WORKER = "ndp_checks.py"
TOLERANCE = 1e-5  # float32: sharded/split sums in another order than one process


def _checks(mode: str) -> list[str]:
    """The worker's checks for 2 or 4 processes (4-process ones: HSDP and dp_shard x tp)."""
    four = ("hsdp_", "dp_shard_2_tp_2_")
    return [n for n in declared_checks(WORKER) if n.startswith(four) == (mode == "4")]


@pytest.mark.parametrize("name", _checks("2"))
def test_two_processes(ndp2_run: LaunchResult, name: str) -> None:
    ndp2_run.assert_passed(name, [0, 1])


@pytest.mark.parametrize("name", _checks("4"))
def test_four_processes(ndp4_run: LaunchResult, name: str) -> None:
    ndp4_run.assert_passed(name, [0, 1, 2, 3])


def test_results_equal_the_one_process_run(ndp2_run: LaunchResult, ndp4_run: LaunchResult) -> None:
    for run, names in (
        (ndp2_run, ("dp_shard_2", "tp_2_mlp", "tp_2_llama")),
        (ndp4_run, ("hsdp_2x2", "dp_shard_2_tp_2")),
    ):
        for name in names:
            difference = run.value(name, 0)
            assert difference is not None and difference < TOLERANCE, (name, difference)


@pytest.mark.parametrize("name", declared_checks("sp_checks.py"))
def test_sequence_parallel(deepspeed_run: LaunchResult, name: str) -> None:
    deepspeed_run.assert_passed(name, [0, 1])


@pytest.mark.parametrize("name", declared_checks("sp4_checks.py"))
def test_sequence_parallel_with_data_parallel(deepspeed_sp4_run: LaunchResult, name: str) -> None:
    deepspeed_sp4_run.assert_passed(name, [0, 1, 2, 3])


def test_sequence_parallel_equals_the_one_process_run(
    deepspeed_run: LaunchResult, deepspeed_sp4_run: LaunchResult
) -> None:
    for run, prefix in ((deepspeed_run, "ulysses"), (deepspeed_sp4_run, "ulysses_sp2_dp2")):
        for name in (f"{prefix}_loss_difference", f"{prefix}_weight_difference"):
            difference = run.value(name, 0)
            assert difference is not None and difference < TOLERANCE, (name, difference)


def test_sequence_parallel_resumes_bitwise(deepspeed_run: LaunchResult) -> None:
    assert deepspeed_run.value("ulysses_resume_weight_difference", 0) == 0.0
