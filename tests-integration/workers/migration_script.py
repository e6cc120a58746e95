"""The "finished code" of Accelerate's migration guide (spec 002), run as a script.

The block between the two ``# ---`` markers is the guide's code verbatim, except for its import
line (``from accel.core import Accelerator`` instead of ``from accelerate import Accelerator``).
Before it, the objects the guide presumes defined (``training_dataloader``, ``model``,
``optimizer``, ``scheduler``, ``loss_function``); after it, the report for the tests.

The job always sees 8 samples per step (``8 / WORLD_SIZE`` per process). Accelerate's prepared
scheduler advances ``num_processes`` times per optimizer step (each process consumed one
batch), so the schedule is written in per-process batches: ``step_size = 2 * WORLD_SIZE``
gives the same learning rate at every step for any number of processes.
"""

import os

import torch
from _harness import Checks
from torch.utils.data import DataLoader, TensorDataset

WORLD_SIZE = int(os.environ.get("WORLD_SIZE", "1"))
torch.manual_seed(0)
_inputs = torch.randn(48, 4)
_targets = _inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(48, 1)
# A seeded generator gives the same permutation to one process and to two (without one,
# Accelerate, and accel, draw the 1-process order from the global RNG at each epoch).
training_dataloader = DataLoader(
    TensorDataset(_inputs, _targets),
    batch_size=8 // WORLD_SIZE,
    shuffle=True,
    generator=torch.Generator().manual_seed(1),
)
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2 * WORLD_SIZE, gamma=0.5)
loss_function = torch.nn.MSELoss()

# --- the guide's finished code ---
from accel.core import Accelerator  # noqa: E402

accelerator = Accelerator()

model, optimizer, training_dataloader, scheduler = accelerator.prepare(
    model, optimizer, training_dataloader, scheduler
)

for batch in training_dataloader:
    optimizer.zero_grad()
    inputs, targets = batch
    outputs = model(inputs)
    loss = loss_function(outputs, targets)
    accelerator.backward(loss)
    optimizer.step()
    scheduler.step()
# --- end of the guide's code ---

report = Checks()


@report.add
def finished_training():
    """Record what the tests compare with the 1-process run."""
    report.record("num_processes", accelerator.num_processes)
    report.record("distributed_type", str(accelerator.distributed_type.value))
    report.record("last_lr", scheduler.get_last_lr())
    report.record(
        "weights",
        {
            name: tensor.flatten().tolist()
            for name, tensor in accelerator.unwrap_model(model).state_dict().items()
        },
    )


report.run(accelerator.process_index)
accelerator.wait_for_everyone()
if torch.distributed.is_initialized() and __name__ == "__main__" and WORLD_SIZE > 1:
    torch.distributed.destroy_process_group()
