"""Checkpoint while training, resume after a crash: run it, kill it, run it again.

    uv run accel launch --cpu --num_processes 2 examples/train_with_checkpoints.py runs/ckpt-demo
    uv run python examples/train_with_checkpoints.py runs/ckpt-demo        # 1 process

Every 20 steps the state is saved in the background (`async_save=True`: the loop waits only
for the copy to memory) under `<project>/checkpoints/checkpoint_<n>`, keeping the last 2.
Started again on the same folder, the script loads the newest complete checkpoint and goes on
from the next unseen batch of the same epoch; the final weights equal an uninterrupted run's.
"""

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from accel.core import Accelerator, DataLoaderConfiguration, ProjectConfiguration, set_seed

project = sys.argv[1] if len(sys.argv) > 1 else "runs/ckpt-demo"
set_seed(0)
accelerator = Accelerator(
    project_config=ProjectConfiguration(
        project_dir=project, automatic_checkpoint_naming=True, total_limit=2
    ),
    # a sampler whose order depends only on the seed and the epoch: exact resume
    dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
)

inputs = torch.randn(2048, 16)
targets = inputs @ torch.randn(16, 1)
loader = DataLoader(TensorDataset(inputs, targets), batch_size=32, shuffle=True)
model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

progress = {"epoch": 0}


class Progress:
    """Anything with state_dict/load_state_dict can ride along in the checkpoint."""

    def state_dict(self) -> dict:
        return dict(progress)

    def load_state_dict(self, state: dict) -> None:
        progress.update(state)


accelerator.register_for_checkpointing(Progress())
try:
    folder = accelerator.load_state()  # the newest complete checkpoint
    accelerator.print(f"resumed from {folder} (epoch {progress['epoch']})")
except FileNotFoundError:
    accelerator.print("no checkpoint yet: starting from scratch")

step = 0
while progress["epoch"] < 3:
    for batch_inputs, batch_targets in loader:  # a resumed epoch starts at the unseen batch
        loss = torch.nn.functional.mse_loss(model(batch_inputs), batch_targets)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if step % 20 == 0:
            accelerator.save_state(async_save=True)
    progress["epoch"] += 1
    accelerator.print(f"epoch {progress['epoch']}: loss {loss.item():.4f}")

accelerator.wait_for_checkpoint()  # also done by end_training() and at exit
first = accelerator.unwrap_model(model)[0].weight.flatten()[:3].tolist()
accelerator.print(f"done: first weights {[round(w, 6) for w in first]}")
accelerator.end_training()
