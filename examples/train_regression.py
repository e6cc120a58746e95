"""Train a small model on synthetic data with accel: the same file runs on 1 or N processes.

    uv run torchrun --nproc_per_node 2 examples/train_regression.py   # 2 CPU processes
    uv run python examples/train_regression.py                        # 1 process

The loop is the plain PyTorch loop with Accelerate's three changes: create an `Accelerator`,
pass the objects through `prepare`, call `accelerator.backward(loss)`.
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from accel.core import Accelerator, set_seed

set_seed(0)
accelerator = Accelerator(gradient_accumulation_steps=2)

# y = x @ w_true + noise, 4096 samples
inputs = torch.randn(4096, 32)
w_true = torch.randn(32, 1)
targets = inputs @ w_true + 0.01 * torch.randn(4096, 1)
train_loader = DataLoader(TensorDataset(inputs, targets), batch_size=64, shuffle=True)
eval_loader = DataLoader(TensorDataset(inputs[:1000], targets[:1000]), batch_size=128)

model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10 * len(train_loader))
loss_function = torch.nn.MSELoss()

model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
    model, optimizer, train_loader, eval_loader, scheduler
)

for epoch in range(5):
    model.train()
    for batch_inputs, batch_targets in train_loader:
        with accelerator.accumulate(model):
            loss = loss_function(model(batch_inputs), batch_targets)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()

    model.eval()
    squared_errors = []
    with torch.no_grad():
        for batch_inputs, batch_targets in eval_loader:
            predictions = model(batch_inputs)
            predictions, batch_targets = accelerator.gather_for_metrics(
                (predictions, batch_targets)
            )
            squared_errors.append((predictions - batch_targets).pow(2))
    mse = torch.cat(squared_errors).mean().item()
    seen = sum(len(e) for e in squared_errors)
    accelerator.print(f"epoch {epoch}: eval mse {mse:.4f} over {seen} samples")

accelerator.print(f"done on {accelerator.num_processes} process(es): final eval mse {mse:.4f}")
accelerator.wait_for_everyone()
accelerator.state.destroy_process_group()
