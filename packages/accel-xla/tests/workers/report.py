"""Worker for test_xla_launch: trains a few steps and prints what the Accelerator saw, as JSON."""

import json

import torch

from accel.core import Accelerator

accelerator = Accelerator()
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
for _ in range(3):
    loss = model(torch.ones(8, 4, device=accelerator.device)).pow(2).mean()
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
report = {
    "distributed_type": accelerator.distributed_type.value,
    "device": str(accelerator.device),
    "num_processes": accelerator.num_processes,
    "process_index": accelerator.process_index,
    "strategy": type(accelerator.strategy).__name__,
    "mixed_precision": accelerator.mixed_precision,
    "loss": loss.item(),
}
print("REPORT " + json.dumps(report), flush=True)
