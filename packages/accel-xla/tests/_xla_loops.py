"""The training loop of docs/accelerator.md, parameterized for the XLA tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from accel.core import Accelerator, set_seed
from accel.state import reset_state


@contextmanager
def job(monkeypatch: pytest.MonkeyPatch, xla: bool) -> Iterator[None]:
    """A fresh accel state that runs on XLA's device (``xla=True``) or on the CPU."""
    reset_state()
    monkeypatch.setenv("ACCEL_USE_XLA", "1" if xla else "0")
    try:
        yield
    finally:
        reset_state()


def make_objects(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, DataLoader, Any]:
    set_seed(seed)
    inputs = torch.randn(256, 8)
    targets = inputs @ torch.randn(8, 1) + 0.01 * torch.randn(256, 1)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=32, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=16, gamma=0.7)
    return model, optimizer, loader, scheduler


def run_epochs(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: Any,
    loader: Any,
    scheduler: Any,
    epochs: int,
    clip: float | None = None,
) -> list[float]:
    losses = []
    for _ in range(epochs):
        for inputs, targets in loader:
            with accelerator.accumulate(model):
                loss = torch.nn.functional.mse_loss(model(inputs), targets)
                accelerator.backward(loss)
                if clip is not None and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def train(
    accumulation: int = 1, epochs: int = 3, mixed_precision: str = "no", clip: float | None = None
) -> tuple[Accelerator, dict[str, torch.Tensor], list[float]]:
    accelerator = Accelerator(
        gradient_accumulation_steps=accumulation, mixed_precision=mixed_precision
    )
    model, optimizer, loader, scheduler = accelerator.prepare(*make_objects())
    losses = run_epochs(accelerator, model, optimizer, loader, scheduler, epochs, clip)
    return accelerator, accelerator.get_state_dict(model), losses
