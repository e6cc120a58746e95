"""Exact resume with shuffle=True and default settings, on 2 gloo processes (issue #13, part 1).

Two launches of ``workers/resume_matrix.py``, one after the other:

1. The matrix: for each configuration (default, ``dispatch_batches``, ``split_batches``,
   ``even_batches=False``, ``num_workers=2``, seedable sampler, an iterable dataset without
   ``state_dict`` (dispatched), a sharded iterable dataset with ``state_dict``), an
   uninterrupted run saves at 4 points (mid first epoch inside an accumulation window, right
   after the last batch of an epoch, mid second epoch at a window boundary, mid second epoch
   inside a window); each checkpoint is resumed by a job rebuilt from ``set_seed(0)`` (as a
   new process would), positioned by accel and, for the default and iterable setups, with
   ``skip_first_batches`` as Accelerate's scripts do. Every resumed run must train on
   bitwise the same losses and end with bitwise the same weights.
2. A real fresh process resumes the default setup's mid-accumulation checkpoint with
   ``load_state`` + ``skip_first_batches``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from background import background
from launching import LaunchResult, run_distributed

# The launches run in the background (background.py); a test waiting for them gets their
# timeouts on top of this.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TIMEOUT = 600.0
CONFIGS = (
    "default",
    "dispatch_batches",
    "split_batches",
    "even_batches_false",
    "num_workers",
    "seedable_sampler",
    "iterable",
    "iterable_stateful_shard",
)
POINTS = ("mid_first_epoch", "end_of_epoch", "mid_second_epoch", "mid_accumulation")
CASES = [
    (config, mode, point)
    for config in CONFIGS
    for mode in (("auto", "skip") if config in ("default", "iterable") else ("auto",))
    for point in POINTS
]


@dataclass(frozen=True)
class ResumeRuns:
    """The matrix launch, then the fresh-process resume of one of its checkpoints."""

    root: Path
    matrix: LaunchResult
    fresh: LaunchResult


@background(seconds=50, timeout=2 * TIMEOUT)
def resume_runs(root: Path) -> ResumeRuns:
    matrix = run_distributed(
        "resume_matrix.py", args=[str(root)], timeout=TIMEOUT, out_dir=root / "matrix"
    )
    checkpoint = root / "default-mid_accumulation"
    fresh = run_distributed(
        "resume_matrix.py",
        args=[str(root), "--fresh", str(checkpoint)],
        timeout=TIMEOUT,
        out_dir=root / "fresh",
    )
    return ResumeRuns(root, matrix, fresh)


@pytest.fixture(scope="module")
def root(resume_runs: ResumeRuns) -> Path:
    return resume_runs.root


@pytest.fixture(scope="module")
def matrix(resume_runs: ResumeRuns) -> LaunchResult:
    run = resume_runs.matrix
    assert run.returncode == 0 and not run.timed_out, run.diagnostics()
    return run


@pytest.fixture(scope="module")
def fresh(resume_runs: ResumeRuns, matrix: LaunchResult) -> LaunchResult:
    run = resume_runs.fresh
    assert run.returncode == 0 and not run.timed_out, run.diagnostics()
    return run


@pytest.mark.parametrize("config, mode, point", CASES)
def test_resume_is_bitwise_equal(matrix: LaunchResult, config: str, mode: str, point: str) -> None:
    for rank in (0, 1):
        matrix.assert_passed(config, [rank])
        outcome = matrix.value(f"{config}:{mode}:{point}", rank)
        assert outcome["losses_equal"], f"rank {rank}: the resumed batches' losses differ"
        assert outcome["weights_equal"], f"rank {rank}: the final weights differ"


def test_iterable_without_state_dict_warns(matrix: LaunchResult) -> None:
    """Replaying a stream is announced (once per job: by rank 0); a dataset with state_dict
    resumes without a warning."""
    for rank in (0, 1):
        warned = matrix.value("iterable:auto:mid_second_epoch", rank)["warnings"]
        replay = [w for w in warned if "without state_dict()/load_state_dict()" in w]
        assert bool(replay) == (rank == 0), warned
        quiet = matrix.value("iterable_stateful_shard:auto:mid_second_epoch", rank)["warnings"]
        assert not quiet, quiet
        assert not matrix.value("default:auto:mid_second_epoch", rank)["warnings"]


def test_accumulated_gradients_saved_only_inside_a_window(root: Path, matrix: LaunchResult) -> None:
    inside = sorted(p.name for p in (root / "default-mid_accumulation").glob("accel_gradients_*"))
    assert inside == ["accel_gradients_0.safetensors", "accel_gradients_1.safetensors"]
    assert not list((root / "default-mid_second_epoch").glob("accel_gradients_*"))


def test_fresh_process_resume_is_bitwise_equal(matrix: LaunchResult, fresh: LaunchResult) -> None:
    """load_state + skip_first_batches in a new process, from 3 batches into epoch 2 inside an
    accumulation window: the same losses and, at the end, the same weights, on both ranks."""
    per_epoch = matrix.value("default:per_epoch", 0)
    for rank in (0, 1):
        fresh.assert_passed("fresh_resume", [rank])
        assert fresh.value("resumed_at", rank) == {"epoch": 1, "step": 3}
        reference = matrix.value("default:reference_losses", rank)
        assert fresh.value("losses", rank) == reference[per_epoch + 3 :]
        assert fresh.value("weights", rank) == matrix.value("default:reference_weights", rank)
