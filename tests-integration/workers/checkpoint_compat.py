"""One half of a checkpoint exchange between accel and Accelerate (one library per process).

``python checkpoint_compat.py {accel,accelerate} {save,load} FOLDER REPORT.json``

``save`` trains 3 steps, saves the state to FOLDER, trains 3 more steps; ``load`` builds the
same objects from another seed, loads FOLDER and trains the same 3 more steps. Both write
the losses (including draws from ``random`` and numpy) of the last 3 steps, the final weights
and the custom object's state to REPORT.json, so the two halves can be compared exactly.
"""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.count = state["count"]


def main() -> None:
    library, mode, folder, report = sys.argv[1:5]
    if library == "accel":
        import accel.state
        from accel.core import Accelerator, set_seed

        accel.state.reset_state()
    else:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed

        AcceleratorState._reset_state(True)

    set_seed(1 if mode == "save" else 99)
    accelerator = Accelerator(cpu=True)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 4, generator=generator)
    loader = DataLoader(TensorDataset(inputs, inputs.sum(dim=1, keepdim=True)), batch_size=4)
    counter = Counter()
    accelerator.register_for_checkpointing(counter)
    model, optimizer, scheduler, loader = accelerator.prepare(model, optimizer, scheduler, loader)
    batches = list(loader)

    def train(steps: list) -> list[float]:
        losses = []
        for x, y in steps:
            loss = nn.functional.mse_loss(model(x), y)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            counter.count += 1
            losses.append(loss.item() + random.random() + float(np.random.rand()))
        return losses

    if mode == "save":
        train(batches[:3])
        accelerator.save_state(folder)
    else:
        accelerator.load_state(folder)
    losses = train(batches[3:6])
    weights = {k: v.tolist() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    result = {
        "losses": losses,
        "weights": weights,
        "count": counter.count,
        "lr": scheduler.get_last_lr(),
        "step": accelerator.step,
    }
    with open(report, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
