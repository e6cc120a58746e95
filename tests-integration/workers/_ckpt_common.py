"""What the checkpoint crash/resume workers share: a small deterministic training setup.

Used by ``resume_train.py`` (2 processes, killed and resumed) and ``crash_save.py`` (one
process, killed inside ``save_state``). Everything is seeded, runs on CPU, and uses randomness
on purpose (a shuffling sampler, dropout), so an exact resume has to restore the RNG states and
the dataloader position, not just the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from accel.core import Accelerator, DataLoaderConfiguration, ProjectConfiguration, set_seed

SAMPLES = 40
BATCH_SIZE = 4  # per process: 40 samples, 2 processes -> 5 batches per epoch each
TOTAL_LIMIT = 2


class CountingDataset(Dataset):
    """A fixed regression data set that counts how many samples were loaded (``calls``)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.inputs = torch.randn(SAMPLES, 4, generator=generator)
        weights = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.targets = self.inputs @ weights + 0.1 * torch.randn(SAMPLES, 1, generator=generator)
        self.calls = 0

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.calls += 1
        return self.inputs[index], self.targets[index], index


class Progress:
    """Training progress saved with ``register_for_checkpointing``: batches done, epoch."""

    def __init__(self) -> None:
        self.batches = 0
        self.epoch = 0

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.batches = int(state["batches"])
        self.epoch = int(state["epoch"])


class Setup:
    """An Accelerator and its prepared model, optimizer, scheduler and shuffled dataloader.

    The project saves checkpoints under ``project/checkpoints`` with automatic naming and
    ``total_limit=2``; gradients accumulate over 2 batches; the model uses dropout.
    """

    def __init__(self, project: Path) -> None:
        self.accelerator = Accelerator(
            cpu=True,
            gradient_accumulation_steps=2,
            project_config=ProjectConfiguration(
                project_dir=str(project),
                automatic_checkpoint_naming=True,
                total_limit=TOTAL_LIMIT,
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        set_seed(0)
        self.dataset = CountingDataset()
        model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.25), nn.GELU(), nn.Linear(16, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=0.1, total_iters=20
        )
        loader = DataLoader(self.dataset, batch_size=BATCH_SIZE, shuffle=True)
        self.model, self.optimizer, self.scheduler, self.loader = self.accelerator.prepare(
            model, optimizer, scheduler, loader
        )
        self.progress = Progress()
        self.accelerator.register_for_checkpointing(self.progress)
        self.checkpoints = project / "checkpoints"

    def train_batch(self, batch: Any) -> float:
        """One batch of training under ``accumulate`` (a step every 2 batches)."""
        inputs, targets, _ = batch
        with self.accelerator.accumulate(self.model):
            loss = F.mse_loss(self.model(inputs), targets)
            self.accelerator.backward(loss)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        self.progress.batches += 1
        return loss.item()

    def weights(self) -> dict[str, torch.Tensor]:
        """The unwrapped model's weights."""
        return self.accelerator.unwrap_model(self.model).state_dict()

    def state_digest(self) -> str:
        """sha256 of everything a checkpoint must bring back: weights, optimizer, scheduler,
        progress, and the RNG states of torch, numpy and ``random``."""
        return digest(
            {
                "model": self.weights(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "progress": self.progress.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "random_rng": random.getstate(),
            }
        )

    def listing(self) -> dict[str, bool]:
        """Every entry of the checkpoints folder (hidden ones too) -> whether it has the
        completion marker."""
        if not self.checkpoints.is_dir():
            return {}
        return {
            entry.name: (entry / "accel_checkpoint.json").is_file()
            for entry in sorted(self.checkpoints.iterdir())
        }


def digest(value: Any) -> str:
    """sha256 of a nest of tensors, arrays, mappings, sequences and plain values, bit-exact
    for tensors (their raw bytes, dtype and shape)."""
    hasher = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            tensor = item.detach().cpu().contiguous()
            hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            hasher.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
        elif isinstance(item, np.ndarray):
            hasher.update(f"A{item.dtype}{item.shape}".encode())
            hasher.update(item.tobytes())
        elif isinstance(item, Mapping):
            hasher.update(b"{")
            for key, inner in item.items():
                hasher.update(repr(key).encode())
                feed(inner)
            hasher.update(b"}")
        elif isinstance(item, (list, tuple)):
            hasher.update(b"[")
            for inner in item:
                feed(inner)
            hasher.update(b"]")
        else:
            hasher.update(repr(item).encode())

    feed(value)
    return hasher.hexdigest()


def append_journal(path: Path, entry: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path`` and flush it to disk (it must survive a SIGKILL)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
