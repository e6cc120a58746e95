"""Crash safety and exact resume of ``save_state``/``load_state``, with real processes (issue #4).

Three chains of launches run in the background (``background.py``; importing torch dominates
their cost):

- **Kill and resume, 2 gloo processes** (``workers/resume_train.py``, 4 epochs of 5 batches
  per process, shuffling sampler, dropout, AdamW + LinearLR, gradient accumulation 2,
  ``total_limit=2``, a save every 3 batches). A trains uninterrupted. B dies mid-save: rank 1
  SIGKILLs itself inside the save after batch 12 (mid-epoch) while rank 0 writes. C is a fresh
  launch, ``load_state()`` without a path, and rank 0 SIGKILLs itself after batch 17. D
  resumes again, from the checkpoint taken after the last batch of epoch 3, and finishes. D's
  final weights must be bitwise equal to A's, and every batch of B, C and D must see the same
  samples and the same loss as A's batch of the same number.
- **SIGKILL inside save_state, one process** (``workers/crash_save.py``): a chain of processes
  on one project; each resumes from what the previous one's crash left, saves once normally,
  then dies at the next kill point inside a save.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from background import background
from launching import WORKERS, LaunchResult, run_distributed, run_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TIMEOUT = 150.0
TOTAL_LIMIT = 2
BATCHES = 20  # per process: 4 epochs x 5 batches
SAMPLES_PER_BATCH = 4
KILL_POINTS = (
    "torn_weights",
    "custom_state_dict",
    "before_marker",
    "before_rename",
    "prune_mid_delete",
)
# A crash at these points comes after the new checkpoint was renamed into place: it counts.
COMPLETED_POINTS = {"prune_mid_delete"}


@background(seconds=10, timeout=TIMEOUT)
def crash_reference_run(root: Path) -> LaunchResult:
    """A: the uninterrupted run."""
    return run_distributed(
        "resume_train.py", args=[str(root / "reference")], timeout=TIMEOUT, out_dir=root / "A"
    )


@background(seconds=35, timeout=3 * TIMEOUT)
def crash_resumed_runs(root: Path) -> dict[str, LaunchResult]:
    """B, C, D of the kill-and-resume scenario, one after another on one project."""
    project = str(root / "project")
    steps = {
        "B": ["--save-every", "3", "--die-in-save", "12"],
        "C": ["--save-every", "3", "--resume", "--die-after", "17"],
        "D": ["--save-every", "3", "--resume"],
    }
    return {
        name: run_distributed(
            "resume_train.py", args=[project, *args], timeout=TIMEOUT, out_dir=root / name
        )
        for name, args in steps.items()
    }


@dataclass
class Chain:
    """The single-process launches of the kill chain and the project they shared."""

    runs: list[LaunchResult]
    project: Path


@background(seconds=45, timeout=(len(KILL_POINTS) + 1) * TIMEOUT)
def crash_chain_runs(root: Path) -> Chain:
    """One single-process launch per kill point, then a last one that saves without dying."""
    project = root / "project"
    runs = [
        run_processes(
            WORKERS / "crash_save.py",
            [{"CKPT_PROJECT": str(project), "CKPT_KILL_POINT": point}],
            TIMEOUT,
            root / f"process_{i}",
            name=f"crash_save {point or '(no kill)'}",
        )
        for i, point in enumerate((*KILL_POINTS, ""))
    ]
    return Chain(runs, project)


@pytest.fixture(scope="module")
def reference(crash_reference_run: LaunchResult) -> LaunchResult:
    run = crash_reference_run
    assert run.returncode == 0 and not run.timed_out, run.diagnostics()
    for rank in (0, 1):
        run.assert_passed("train", [rank])
        assert run.value("batches", rank) == BATCHES
    return run


@pytest.fixture(scope="module")
def resumed(crash_resumed_runs: dict[str, LaunchResult]) -> dict[str, LaunchResult]:
    return crash_resumed_runs


def _assert_same_batches(run: LaunchResult, reference: LaunchResult, rank: int) -> int:
    """Every batch ``run`` trained saw A's samples and A's loss (bitwise) at the same batch
    number; returns how many batches it trained."""
    start = run.value("resumed_batches", rank) or 0
    order, losses = run.value("order", rank), run.value("losses", rank)
    expected_order = reference.value("order", rank)[start : start + len(order)]
    expected_losses = reference.value("losses", rank)[start : start + len(losses)]
    assert order == expected_order, f"{run.name} rank {rank}: batches from {start + 1} differ"
    assert losses == expected_losses, f"{run.name} rank {rank}: losses from {start + 1} differ"
    return len(order)


def test_rank_killed_mid_save_ends_the_job(resumed: dict[str, LaunchResult]) -> None:
    """B: rank 1 dies inside save_state while rank 0 writes; the job ends (no hang, the gloo
    peer fails or torchrun tears it down) and leaves only a hidden .partial folder."""
    b, c = resumed["B"], resumed["C"]
    assert not b.timed_out, b.diagnostics()
    assert b.returncode != 0, b.diagnostics()
    assert b.status("train", 1) is None, "rank 1 should have died inside the save"
    listing = c.value("listing_before", 0)
    assert listing == {".checkpoint_3.partial": False, "checkpoint_1": True, "checkpoint_2": True}
    for rank in (0, 1):
        assert c.value("loaded", rank) == "checkpoint_2", c.diagnostics()


def test_resume_mid_epoch_is_exact(reference: LaunchResult, resumed) -> None:
    """B then C: C resumes after batch 9 (epoch 2, 4 of 5 batches used) and replays A's
    batches exactly; the resumed pass loads only the batch not yet used."""
    b, c = resumed["B"], resumed["C"]
    assert not c.timed_out and c.returncode != 0, c.diagnostics()  # rank 0 killed itself
    for rank in (0, 1):
        c.assert_passed("resume", [rank])
        assert _assert_same_batches(b, reference, rank) == 12
        assert c.value("resumed_batches", rank) == 9 and c.value("resumed_epoch", rank) == 1
        assert _assert_same_batches(c, reference, rank) >= 17 - 9
        # The skipped batches' indices are skipped: no sample of them is loaded again.
        assert c.value("first_pass_batches", rank) == 1
        assert c.value("first_pass_samples_loaded", rank) == SAMPLES_PER_BATCH


def test_resume_after_last_batch_of_epoch_finishes_bitwise_equal(
    reference: LaunchResult, resumed
) -> None:
    """D resumes from the checkpoint taken after the last batch of epoch 3 (inside the loop),
    finishes, and its final weights are bitwise equal to the uninterrupted run's."""
    d = resumed["D"]
    assert d.returncode == 0 and not d.timed_out, d.diagnostics()
    digests = set()
    for rank in (0, 1):
        d.assert_passed("train", [rank])
        assert d.value("loaded", rank) == "checkpoint_4"
        assert d.value("resumed_batches", rank) == 15 and d.value("resumed_epoch", rank) == 2
        assert _assert_same_batches(d, reference, rank) == BATCHES - 15
        assert d.value("batches", rank) == BATCHES
        assert d.value("weights_digest", rank) == reference.value("weights_digest", rank)
        # Nothing was left of that pass: the resumed pass loads nothing and ends at once.
        assert d.value("first_pass_batches", rank) == 0
        assert d.value("first_pass_samples_loaded", rank) == 0
        digests.add(d.value("weights_digest", rank))
    assert len(digests) == 1, "the two ranks ended with different weights"
    # Nothing incomplete left behind, and total_limit kept exactly 2 complete checkpoints.
    assert d.value("listing_before", 0) == {"checkpoint_3": True, "checkpoint_4": True}
    assert d.value("listing_after", 0) == {"checkpoint_4": True, "checkpoint_5": True}


# -- SIGKILL inside save_state, one process --------------------------------------------------


@pytest.fixture(scope="module")
def chain(crash_chain_runs: Chain) -> list[LaunchResult]:
    return crash_chain_runs.runs


@pytest.fixture(scope="module")
def journal(crash_chain_runs: Chain) -> list[dict]:
    path = crash_chain_runs.project / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _expected_checkpoint(journal: list[dict], point: str) -> dict:
    """The journal's ``saving`` entry of the checkpoint a resume after ``point`` must load."""
    events = journal[: next(i for i, e in enumerate(journal) if e.get("point") == point) + 1]
    if point in COMPLETED_POINTS:
        return events[-1]
    last_saved = next(e["folder"] for e in reversed(events) if e["event"] == "saved")
    return next(
        e for e in events if e["event"] == "saving" and f"checkpoint_{e['iteration']}" == last_saved
    )


@pytest.mark.parametrize("index, point", list(enumerate(KILL_POINTS)))
def test_sigkill_inside_save_state(
    chain: list[LaunchResult], journal: list[dict], index: int, point: str
) -> None:
    """After a SIGKILL at ``point``, a fresh process's load_state() picks the newest complete
    checkpoint (never the .partial), gets back exactly what was saved there, trains on, and
    its next save succeeds and clears the leftover; total_limit never left 0 complete."""
    crashed, after = chain[index], chain[index + 1]
    assert crashed.returncode == -9 and not crashed.timed_out, crashed.diagnostics()
    crashed.assert_passed("save_ok", [0])
    assert crashed.status("crash", 0) is None, "the crash check must not have returned"

    listing = after.value("listing_before", 0)
    complete = [name for name, done in listing.items() if done and not name.startswith(".")]
    assert complete, f"no complete checkpoint survived the kill at {point}: {listing}"
    if point == "prune_mid_delete":  # the old checkpoint was renamed out of sight first
        assert any(name.endswith(".deleting") for name in listing), listing
    after.assert_passed("resume", [0])
    expected = _expected_checkpoint(journal, point)
    assert after.value("loaded", 0) == f"checkpoint_{expected['iteration']}", listing
    assert after.value("loaded_digest", 0) == expected["digest"], "loaded state != saved state"
    assert after.value("iteration_after_load", 0) == expected["iteration"] + 1

    after.assert_passed("save_ok", [0])
    saved = after.value("saved", 0)
    listing = after.value("listing_after_save", 0)
    assert not [name for name in listing if name.startswith(".")], listing
    complete = sorted(
        (name for name, done in listing.items() if done), key=lambda n: int(n.split("_")[1])
    )
    assert complete[-1] == saved and len(complete) == TOTAL_LIMIT, listing


def test_crash_chain_ends_with_a_clean_save(chain: list[LaunchResult]) -> None:
    """The last process (no kill) resumes and saves twice: total_limit keeps 2 complete
    checkpoints; the old checkpoint whose deletion the pruning crash cut short (renamed out of
    sight first) is finished off, never loaded."""
    last = chain[-1]
    assert last.returncode == 0 and not last.timed_out, last.diagnostics()
    for name in ("resume", "save_ok", "crash"):
        last.assert_passed(name, [0])
    listing = last.value("listing_final", 0)
    assert sum(listing.values()) == TOTAL_LIMIT, listing
    assert not [name for name in listing if name.startswith(".")], listing
