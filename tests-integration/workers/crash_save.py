"""One process of a crash chain: resume, save once, then die by SIGKILL inside a save.

``CKPT_PROJECT=dir CKPT_KILL_POINT=point python crash_save.py`` (single process; see
``tests-integration/test_checkpoint_crash.py``). Each process of the chain:

1. ``resume``: records the checkpoints folder as the crash left it; if a checkpoint was ever
   saved, ``load_state()`` (no path) and records which folder it picked and the digest of
   the state it brought back (weights, optimizer, scheduler, progress, RNG states);
2. ``save_ok``: trains 2 batches and saves normally (this must work after any crash);
3. ``crash``: trains 2 batches and saves with a SIGKILL armed at ``CKPT_KILL_POINT``; with no
   point (the last process of the chain) the save simply completes.

Before each save, ``journal.jsonl`` in the project gets the iteration and the digest of the
state being saved; after it returns, the folder it wrote. The kill points reach into the save
only through real seams, patched inside this process: a custom checkpointed object, the
safetensors writer, ``json.dump`` of the marker, ``os.rename``, ``os.remove``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import safetensors.torch
from _ckpt_common import Setup, append_journal
from _harness import Checks

PROJECT = Path(os.environ["CKPT_PROJECT"])
POINT = os.environ.get("CKPT_KILL_POINT", "")
PROJECT.mkdir(parents=True, exist_ok=True)
JOURNAL = PROJECT / "journal.jsonl"
POINTS = (
    "torn_weights",  # model.safetensors half written
    "custom_state_dict",  # weights/optimizer/scheduler written, custom object and RNG not
    "before_marker",  # every file written and flushed, marker not yet
    "before_rename",  # marker written in the .partial folder, not renamed into place
    "prune_mid_delete",  # new checkpoint in place; total_limit deleting an old one
)
if POINT and POINT not in POINTS:
    raise SystemExit(f"CKPT_KILL_POINT must be one of {POINTS}, got {POINT!r}")

checks = Checks()
setup = Setup(PROJECT)
accelerator = setup.accelerator
armed = False


def die() -> None:
    """SIGKILL this process: no ``finally``, no atexit, nothing flushed by Python."""
    os.kill(os.getpid(), signal.SIGKILL)


def _killing(point: str, original):
    """``original`` wrapped so that, when ``point`` is armed, its call kills the process."""

    def torn_weights(tensors, filename, *args, **kwargs):
        original(tensors, filename, *args, **kwargs)
        if armed and os.path.basename(filename) == "model.safetensors":
            with open(filename, "r+b") as handle:  # a write cut in the middle
                handle.truncate(os.path.getsize(filename) // 2)
                os.fsync(handle.fileno())
            die()

    def before_marker(obj, *args, **kwargs):
        if armed and isinstance(obj, dict) and obj.get("format") == "accel-checkpoint":
            die()
        return original(obj, *args, **kwargs)

    def before_rename(src, dst, *args, **kwargs):
        if armed and os.fspath(src).endswith(".partial"):
            die()
        return original(src, dst, *args, **kwargs)

    def prune_mid_delete(path, *args, **kwargs):
        name = os.path.basename(path)
        if armed and os.path.isdir(path) and re.fullmatch(r"\.checkpoint_\d+\.deleting", name):
            os.remove(os.path.join(path, "model.safetensors"))  # some files already gone
            die()
        return original(path, *args, **kwargs)

    return locals()[point]


if POINT == "torn_weights":
    safetensors.torch.save_file = _killing(POINT, safetensors.torch.save_file)
elif POINT == "before_marker":
    json.dump = _killing(POINT, json.dump)
elif POINT == "before_rename":
    os.rename = _killing(POINT, os.rename)
elif POINT == "prune_mid_delete":
    shutil.rmtree = _killing(POINT, shutil.rmtree)
elif POINT == "custom_state_dict":
    progress_state_dict = setup.progress.state_dict

    def state_dict_or_die() -> dict[str, int]:
        if armed:
            die()
        return progress_state_dict()

    setup.progress.state_dict = state_dict_or_die


def batches():
    """Batches forever, epoch after epoch (a pass left suspended is saved mid-epoch)."""
    while True:
        yield from setup.loader


stream = None


def train_and_save(kill: bool) -> str:
    """Train 2 batches, then ``save_state()`` with the kill point armed if ``kill``."""
    global armed, stream
    if stream is None:
        stream = batches()
    for _ in range(2):
        setup.train_batch(next(stream))
    append_journal(
        JOURNAL,
        {
            "event": "saving",
            "iteration": accelerator.save_iteration,
            "digest": setup.state_digest(),
            "point": POINT if kill else "",
        },
    )
    armed = kill
    saved = accelerator.save_state()
    armed = False
    append_journal(JOURNAL, {"event": "saved", "folder": os.path.basename(saved)})
    return saved


@checks.add
def resume():
    """Load the newest complete checkpoint, if this project ever saved one."""
    checks.record("listing_before", setup.listing())
    if JOURNAL.exists():
        loaded = accelerator.load_state()
        checks.record("loaded", os.path.basename(loaded))
        checks.record("loaded_digest", setup.state_digest())
        checks.record("iteration_after_load", accelerator.save_iteration)


@checks.add
def save_ok():
    """Training continues and the next save succeeds, whatever the last crash left."""
    saved = train_and_save(kill=False)
    checks.record("saved", os.path.basename(saved))
    checks.record("listing_after_save", setup.listing())


@checks.add
def crash():
    """Save again, dying at ``CKPT_KILL_POINT`` (the last process of a chain survives)."""
    saved = train_and_save(kill=bool(POINT))
    if POINT:
        raise AssertionError(f"the kill at {POINT!r} was never reached (saved {saved})")
    checks.record("listing_final", setup.listing())


checks.run(0)
