"""The Accelerator on 2 real gloo CPU processes: same results as 1 process, and as Accelerate.

Five launches (registered in ``conftest.py``, run once per session, in the background):

- ``core_run``: ``workers/core_checks.py`` on 2 processes (training scenarios on half batches,
  ``no_sync``, FSDP2, ``gather_for_metrics``, bad input);
- ``core_reference_run``: the same worker as one plain process (full batches), which also runs
  the migration guide's script first;
- ``migration_run``: ``workers/migration_script.py`` (the guide's finished code) on 2 processes;
- ``sbs_accel_run`` / ``sbs_accelerate_run``: ``workers/sbs_train.py`` on 2 processes with accel
  and with the real Accelerate.

Weights are compared here, in plain Python, from the JSON the workers wrote.
"""

from __future__ import annotations

import pytest
from launching import LaunchResult, declared_checks

pytestmark = pytest.mark.slow

RANKS = (0, 1)
WORKER = "core_checks.py"
# What only the 1-process reference runs (keep in step with REFERENCE_CHECKS in the worker).
REFERENCE_CHECKS = (
    "migration_script_single_process",
    "train_plain",
    "train_accumulate",
    "train_bf16",
    "train_blocks",
)
REFERENCE_ONLY = ("migration_script_single_process", "train_blocks")
DISTRIBUTED_CHECKS = [name for name in declared_checks(WORKER) if name not in REFERENCE_ONLY]

FP32 = 1e-6  # absolute tolerance (plus 1e-5 relative) for float32 weights
# FSDP2 reduce-scatters each rank's half-batch gradient and averages the shards: a different
# float32 summation order than one process on the whole batch (measured ~2e-6 after 6 steps).
FP32_SHARDED = 1e-5
BF16 = 1e-2  # bf16 rounds each half batch's gradient on its own: ~4e-3 apart after 6 steps
# 2-process value -> (1-process reference value, absolute tolerance, ranks that hold it)
EQUIVALENCE = {
    "weights_plain": ("weights_plain", FP32, RANKS),
    "weights_accumulate": ("weights_accumulate", FP32, RANKS),
    "weights_bf16": ("weights_bf16", BF16, RANKS),
    # Accelerate's get_state_dict under FSDP2 gathers the full weights on rank 0 only
    "weights_fsdp_transformer_wrap": ("weights_blocks", FP32_SHARDED, (0,)),
    "weights_fsdp_size_wrap": ("weights_blocks", FP32_SHARDED, (0,)),
    "weights_fsdp_sharded": ("weights_blocks", FP32_SHARDED, RANKS),
}


def largest_difference(
    ours: dict[str, list[float]], reference: dict[str, list[float]], rtol: float = 1e-5
) -> float:
    """The largest ``|a - b| - rtol * |b|`` over two flattened state dicts with equal shapes.

    Example:
        >>> largest_difference({"w": [1.0, 2.0]}, {"w": [1.0, 2.5]}, rtol=0.0)
        0.5
    """
    assert sorted(ours) == sorted(reference), (sorted(ours), sorted(reference))
    worst = 0.0
    for name, values in reference.items():
        assert len(ours[name]) == len(values), (name, len(ours[name]), len(values))
        for a, b in zip(ours[name], values):
            worst = max(worst, abs(a - b) - rtol * abs(b))
    return worst


def test_core_launch_finished(core_run: LaunchResult) -> None:
    core_run.assert_finished(RANKS)


@pytest.mark.parametrize("check", DISTRIBUTED_CHECKS)
def test_core(core_run: LaunchResult, check: str) -> None:
    core_run.assert_passed(check, RANKS)


@pytest.mark.parametrize("check", REFERENCE_CHECKS)
def test_core_reference(core_reference_run: LaunchResult, check: str) -> None:
    core_reference_run.assert_finished((0,))
    core_reference_run.assert_passed(check, [0])


@pytest.mark.parametrize("scenario", EQUIVALENCE)
def test_two_processes_match_one(
    core_run: LaunchResult, core_reference_run: LaunchResult, scenario: str
) -> None:
    reference_name, tolerance, ranks = EQUIVALENCE[scenario]
    reference = core_reference_run.value(reference_name, 0)
    assert reference is not None, core_reference_run.diagnostics()
    for rank in ranks:
        ours = core_run.value(scenario, rank)
        assert ours is not None, f"rank {rank} recorded no {scenario}\n{core_run.diagnostics()}"
        difference = largest_difference(ours, reference)
        assert difference <= tolerance, f"rank {rank}: {scenario} off by {difference:.3g}"


def test_scenarios_really_differ(core_reference_run: LaunchResult) -> None:
    """Guards the equivalence tests: accumulation and bf16 change the result measurably."""
    plain = core_reference_run.value("weights_plain", 0)
    for other in ("weights_accumulate", "weights_bf16"):
        assert largest_difference(core_reference_run.value(other, 0), plain) > 1e-4, other


def test_fsdp_full_state_dict_only_on_rank_0(core_run: LaunchResult) -> None:
    """Like Accelerate (``cpu_offload=True``): rank 0 gets every key, the others none."""
    for scenario in ("weights_fsdp_transformer_wrap", "weights_fsdp_size_wrap"):
        keys = [core_run.value(f"{scenario}_keys", rank) for rank in RANKS]
        assert keys[0] == sorted(core_run.value(scenario, 0) or {}) and keys[0], keys
        assert keys[1] == [], keys


def test_migration_guide_script_on_two_processes(
    migration_run: LaunchResult, core_reference_run: LaunchResult
) -> None:
    migration_run.assert_finished(RANKS)
    migration_run.assert_passed("finished_training", RANKS)
    core_reference_run.assert_passed("migration_script_single_process", [0])
    reference = core_reference_run.value("migration", 0)
    assert (reference["num_processes"], reference["distributed_type"]) == (1, "NO"), reference
    for rank in RANKS:
        assert migration_run.value("num_processes", rank) == 2
        assert migration_run.value("distributed_type", rank) == "MULTI_CPU"
        assert migration_run.value("last_lr", rank) == reference["last_lr"]
        difference = largest_difference(migration_run.value("weights", rank), reference["weights"])
        assert difference <= FP32, f"rank {rank}: weights off by {difference:.3g}"


@pytest.mark.parametrize("launch", ["sbs_accel_run", "sbs_accelerate_run"])
def test_side_by_side_runs_form_a_2_process_cpu_group(
    request: pytest.FixtureRequest, launch: str
) -> None:
    result: LaunchResult = request.getfixturevalue(launch)
    result.assert_finished(RANKS, reference=launch == "sbs_accelerate_run")
    for rank in RANKS:
        result.assert_passed("state_info", RANKS)
        result.assert_passed("train", RANKS)
        assert result.value("state_info", rank) == {
            "distributed_type": "MULTI_CPU",
            "num_processes": 2,
            "process_index": rank,
            "device_type": "cpu",
            "torch_world_size": 2,
            "torch_backend": "gloo",
            "model_wrapper": "DistributedDataParallel",
        }, result.value("state_info", rank)


@pytest.mark.parametrize("value", ["order", "sync_gradients", "lrs", "losses", "weights"])
def test_same_training_as_accelerate(
    sbs_accel_run: LaunchResult, sbs_accelerate_run: LaunchResult, value: str
) -> None:
    for rank in RANKS:
        ours, theirs = sbs_accel_run.value(value, rank), sbs_accelerate_run.value(value, rank)
        assert ours is not None and theirs is not None, (
            sbs_accel_run.diagnostics() + sbs_accelerate_run.diagnostics()
        )
        if value == "losses":
            assert max(abs(a - b) for a, b in zip(ours, theirs)) <= FP32, (ours, theirs)
            assert len(ours) == len(theirs) == 16
        elif value == "weights":
            difference = largest_difference(ours, theirs)
            assert difference <= FP32, f"rank {rank}: weights off by {difference:.3g}"
        else:
            assert ours == theirs, f"rank {rank}:\n  accel:      {ours}\n  accelerate: {theirs}"
