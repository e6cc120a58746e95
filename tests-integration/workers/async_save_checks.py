"""save_state(async_save=True) in a real 2-process DDP job (gloo, CPU).

The writer threads agree over their own gloo group while the training thread keeps running
DDP all-reduces; a write failing on one rank publishes nothing, is reported on every rank,
and the next save works. Writes ``rank<N>.json`` into ``ACCEL_IT_OUT``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from _harness import Checks
from torch import nn

import accel.core.checkpoint.writer as checkpoint_files
from accel.core import Accelerator, CheckpointWriteError, ProjectConfiguration, set_seed
from accel.core.checkpoint import COMPLETE_MARKER
from accel.state import reset_state

RANK = int(os.environ["RANK"])
OUT = Path(os.environ["ACCEL_IT_OUT"])
checks = Checks()

set_seed(0)
accelerator = Accelerator(
    cpu=True,
    project_config=ProjectConfiguration(
        project_dir=str(OUT / "project"), automatic_checkpoint_naming=True, total_limit=2
    ),
)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
model, optimizer = accelerator.prepare(model, optimizer)


def train(steps: int) -> None:
    generator = torch.Generator().manual_seed(RANK * 100 + steps)
    for _ in range(steps):
        inputs = torch.randn(16, 32, generator=generator)
        accelerator.backward(model(inputs).pow(2).mean())
        optimizer.step()
        optimizer.zero_grad()


def weights() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}


@checks.add
def async_save_overlaps_ddp_training() -> None:
    train(2)
    expected = weights()
    folder = accelerator.save_state(async_save=True)
    train(5)  # DDP all-reduces on the default group while the writer agrees on its own
    accelerator.wait_for_checkpoint()
    assert os.path.isfile(os.path.join(folder, COMPLETE_MARKER))
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(os.listdir(folder))
    accelerator.load_state(folder)
    got = weights()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@checks.add
def a_failure_on_one_rank_publishes_nothing_and_is_reported_everywhere() -> None:
    accelerator.wait_for_everyone()
    before = sorted(os.listdir(OUT / "project" / "checkpoints"))
    accelerator.wait_for_everyone()  # every rank listed before rank 0 starts the next save
    original = checkpoint_files.write_file

    def failing(folder: str, file, durable: bool = True) -> str:
        if RANK == 1 and file.name.startswith("random_states"):
            raise OSError(28, "No space left on device (injected on rank 1)")
        return original(folder, file, durable)

    checkpoint_files.write_file = failing
    try:
        folder = accelerator.save_state(async_save=True)
        try:
            accelerator.wait_for_checkpoint()
            raised = ""
        except CheckpointWriteError as error:
            raised = str(error)
    finally:
        checkpoint_files.write_file = original
    expected = "No space left" if RANK == 1 else "another process failed"
    assert expected in raised, raised
    assert not os.path.exists(folder)
    accelerator.wait_for_everyone()
    after = sorted(os.listdir(OUT / "project" / "checkpoints"))
    assert after == before, (before, after)


@checks.add
def the_next_save_after_a_failure_works() -> None:
    train(1)
    folder = accelerator.save_state(async_save=True)
    accelerator.wait_for_checkpoint()
    assert os.path.isfile(os.path.join(folder, COMPLETE_MARKER))
    accelerator.wait_for_everyone()
    kept = sorted(p for p in os.listdir(OUT / "project" / "checkpoints") if not p.startswith("."))
    assert len(kept) == 2, kept


checks.run(RANK)
accelerator.end_training()
reset_state()
if dist.is_initialized():
    dist.destroy_process_group()
