"""Train on 2 processes; optionally save every few batches, die hard, or resume first.

``python -m torch.distributed.run --nproc_per_node 2 resume_train.py PROJECT [options]``
(see ``tests-integration/test_checkpoint_crash.py``):

- ``--save-every N``: ``save_state()`` after every N-th batch (automatic naming,
  ``total_limit=2``);
- ``--resume``: ``load_state()`` (no path: the newest complete checkpoint) before training;
- ``--die-after B``: rank 0 SIGKILLs itself right after training batch B (counted from the
  start of the uninterrupted run), outside any save;
- ``--die-in-save B``: rank 1 SIGKILLs itself inside the ``save_state`` after batch B (from a
  save-state pre-hook, while rank 0 is writing its files).

4 epochs of 5 batches per process. Records the final weights' digest, the sample indices of
every batch trained, how many samples the dataset loaded, and what ``load_state`` picked.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch.distributed as dist
from _ckpt_common import Setup, digest
from _harness import Checks

EPOCHS = 4

parser = argparse.ArgumentParser()
parser.add_argument("project", type=Path)
parser.add_argument("--save-every", type=int, default=0)
parser.add_argument("--resume", action="store_true")
parser.add_argument("--die-after", type=int, default=0)
parser.add_argument("--die-in-save", type=int, default=0)
args = parser.parse_args()

RANK = int(os.environ["RANK"])
checks = Checks()
setup = Setup(args.project)
accelerator = setup.accelerator


def die() -> None:
    """Record what this rank did so far, then SIGKILL this process (no cleanup runs)."""
    checks._write()  # the report as it stands: the check in progress never returns
    os.kill(os.getpid(), signal.SIGKILL)


def die_in_save(models, weights, folder) -> None:
    """Save-state pre-hook: rank 1 dies inside the save that follows batch ``--die-in-save``."""
    if RANK == 1 and setup.progress.batches == args.die_in_save:
        die()


@checks.add
def resume():
    """With ``--resume``: load the newest complete checkpoint and record what it held."""
    checks.record("listing_before", setup.listing())
    if args.resume:
        loaded = accelerator.load_state()
        checks.record("loaded", os.path.basename(loaded))
        checks.record("resumed_batches", setup.progress.batches)
        checks.record("resumed_epoch", setup.progress.epoch)
    setup.dataset.calls = 0  # count only what training loads


@checks.add
def train():
    """Train to the end (or die); record every batch's sample indices and the final weights."""
    accelerator.register_save_state_pre_hook(die_in_save)
    order: list[list[int]] = []
    losses: list[float] = []
    checks.record("order", order)  # the same lists, filled as training goes
    checks.record("losses", losses)
    checks.record("samples_loaded", 0)
    while setup.progress.epoch < EPOCHS:
        for batch in setup.loader:
            losses.append(setup.train_batch(batch))
            order.append(batch[2].tolist())
            checks.record("samples_loaded", setup.dataset.calls)
            checks._write()  # kept up to date: this rank may be killed at any moment
            if args.save_every and setup.progress.batches % args.save_every == 0:
                accelerator.save_state()
            if setup.progress.batches == args.die_after and RANK == 0:
                die()
        if "first_pass_batches" not in checks.report["values"]:
            # After a resume, this pass only yields what the checkpoint had not used yet.
            checks.record("first_pass_batches", len(order))
            checks.record("first_pass_samples_loaded", setup.dataset.calls)
        setup.progress.epoch += 1
    checks.record("samples_loaded", setup.dataset.calls)
    checks.record("batches", setup.progress.batches)
    checks.record("weights_digest", digest(setup.weights()))
    checks.record("listing_after", setup.listing())


checks.run(RANK)
accelerator.wait_for_everyone()
if dist.is_initialized():
    dist.destroy_process_group()
