"""One training script run against either accel or the real Accelerate, for comparison.

``python -m torch.distributed.run --nproc_per_node 2 sbs_train.py accel|accelerate``: the
same model, data (shuffled), AdamW, a linear learning-rate schedule and gradient accumulation
over 2 steps, for 2 epochs. Records the job's shape, the data order, every step's loss and
learning rate, and the final weights; the test compares the two runs rank by rank.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _harness import Checks
from torch.utils.data import DataLoader, TensorDataset

BACKEND = sys.argv[1] if len(sys.argv) > 1 else ""
if BACKEND == "accelerate":
    from accelerate import Accelerator
    from accelerate.utils import set_seed
elif BACKEND == "accel":
    from accel.core import Accelerator, set_seed
else:
    raise SystemExit(f"usage: sbs_train.py accel|accelerate (got {BACKEND!r})")

RANK = int(os.environ["RANK"])
checks = Checks()
accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)


@checks.add
def state_info():
    """The job both libraries formed: must be one 2-process gloo group on CPU."""
    checks.record(
        "state_info",
        {
            "distributed_type": str(accelerator.distributed_type.value),
            "num_processes": accelerator.num_processes,
            "process_index": accelerator.process_index,
            "device_type": accelerator.device.type,
            "torch_world_size": dist.get_world_size() if dist.is_initialized() else None,
            "torch_backend": str(dist.get_backend()) if dist.is_initialized() else None,
            "model_wrapper": type(prepared_model()).__name__,
        },
    )


_prepared: dict = {}


def prepared_model():
    """Build and prepare model, optimizer, data and scheduler once (seeded the same way)."""
    if not _prepared:
        set_seed(0)
        inputs = torch.randn(64, 4)
        targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1)
        indices = torch.arange(64)
        loader = DataLoader(TensorDataset(inputs, targets, indices), batch_size=4, shuffle=True)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=0.1, total_iters=32
        )
        _prepared.update(
            zip(
                ("model", "optimizer", "loader", "scheduler"),
                accelerator.prepare(model, optimizer, loader, scheduler),
            )
        )
    return _prepared["model"]


@checks.add
def train():
    """Two epochs with gradient accumulation; record order, losses, learning rates, weights."""
    model = prepared_model()
    optimizer, loader, scheduler = (_prepared[k] for k in ("optimizer", "loader", "scheduler"))
    order, losses, lrs, syncs = [], [], [], []
    for _ in range(2):
        for inputs, targets, indices in loader:
            with accelerator.accumulate(model):
                loss = F.mse_loss(model(inputs), targets)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            order.append(indices.tolist())
            losses.append(loss.item())
            lrs.append(scheduler.get_last_lr()[0])
            syncs.append(accelerator.sync_gradients)
    checks.record("order", order)
    checks.record("losses", losses)
    checks.record("lrs", lrs)
    checks.record("sync_gradients", syncs)
    checks.record(
        "weights",
        {
            name: tensor.flatten().tolist()
            for name, tensor in accelerator.unwrap_model(model).state_dict().items()
        },
    )


checks.run(RANK)
accelerator.wait_for_everyone()
if dist.is_initialized():
    dist.destroy_process_group()
