"""Train a small regression model on an XLA device (TPU, or XLA's CPU device to try it out).

    # in the XLA environment (see docs/xla.md): torch 2.9 + torch-xla 2.9
    PJRT_DEVICE=CPU accel launch --tpu --num_processes 1 examples/train_xla.py
    PJRT_DEVICE=TPU accel launch --tpu examples/train_xla.py   # one process per TPU core

It is the loop of docs/accelerator.md, unchanged: the Accelerator picks the XLA strategy from
the launcher's environment. `ACCEL_USE_XLA=false python examples/train_xla.py` trains the same
model on the CPU: the printed weights agree to about 1e-6 (tests-xla/ checks that).
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from accel.core import Accelerator, set_seed


def train(gradient_accumulation_steps: int = 2, epochs: int = 3) -> dict[str, torch.Tensor]:
    set_seed(0)
    accelerator = Accelerator(gradient_accumulation_steps=gradient_accumulation_steps)
    inputs = torch.randn(512, 16)
    targets = inputs @ torch.randn(16, 1) + 0.01 * torch.randn(512, 1)
    train_loader = DataLoader(TensorDataset(inputs, targets), batch_size=32, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=8, gamma=0.5)
    loss_function = torch.nn.MSELoss()

    model, optimizer, train_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, scheduler
    )
    for epoch in range(epochs):
        for batch_inputs, batch_targets in train_loader:  # batches arrive on accelerator.device
            with accelerator.accumulate(model):
                loss = loss_function(model(batch_inputs), batch_targets)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        accelerator.print(f"epoch {epoch}: loss {loss.item():.4f}")
    accelerator.print(
        f"trained on {accelerator.device} ({accelerator.distributed_type.value}, "
        f"{accelerator.num_processes} process(es))"
    )
    return accelerator.get_state_dict(model)  # CPU tensors on every device type


if __name__ == "__main__":
    weights = train()
    print(f"first weight: {weights['0.weight'][0, 0].item():.6f} on {weights['0.weight'].device}")
