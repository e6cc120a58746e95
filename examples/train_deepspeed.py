"""Train a small regression model with DeepSpeed ZeRO through accel (runs on CPU).

    uv run accel launch --use_deepspeed --zero_stage 2 --cpu --num_processes 2 \\
        examples/train_deepspeed.py

The script is the plain accel loop: DeepSpeed is chosen by the launcher (``--use_deepspeed``,
``--zero_stage``, ``--offload_optimizer_device``, ``--deepspeed_config_file``...), and
``prepare`` fills the DeepSpeed config's batch sizes and accumulation steps. With
``--zero_stage 3`` the final weights are gathered from the partitions by ``save_model``.

Options: ``--epochs N``, ``--out DIR`` (where the model is saved), ``--report FILE`` (a JSON
summary written by the main process, used by accel's tests).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from accel.core import Accelerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="deepspeed_model")
    parser.add_argument("--report", default=None)
    args = parser.parse_args()

    accelerator = Accelerator(gradient_accumulation_steps=2)
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = x @ torch.linspace(-1, 1, 16).unsqueeze(1) + 0.5
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True
    )
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    losses = []
    for epoch in range(args.epochs):
        total = torch.zeros(())
        for inputs, targets in loader:
            with accelerator.accumulate(model):
                loss = nn.functional.mse_loss(model(inputs), targets)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
            total += loss.detach()
        mean = accelerator.reduce(total / len(loader), reduction="mean").item()
        losses.append(mean)
        accelerator.print(f"epoch {epoch}: loss {mean:.4f}")

    accelerator.save_model(model, args.out)
    plugin = accelerator.state.deepspeed_plugin
    if args.report and accelerator.is_main_process:
        report = {
            "distributed_type": accelerator.distributed_type.value,
            "num_processes": accelerator.num_processes,
            "zero_stage": plugin.zero_stage if plugin else None,
            "micro_batch": plugin.deepspeed_config["train_micro_batch_size_per_gpu"]
            if plugin
            else None,
            "losses": losses,
        }
        with open(args.report, "w") as handle:
            json.dump(report, handle)
    accelerator.end_training()


if __name__ == "__main__":
    main()
