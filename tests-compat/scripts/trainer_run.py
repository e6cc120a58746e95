"""A transformers ``Trainer`` run on a tiny GPT-2 built from a config (no hub), for the compat tests.

Runs unchanged on the real Accelerate (dev environment) and on accel's compat wheel
(.venv-compat): train 8 steps with a checkpoint every 4, evaluate, then a fresh ``Trainer``
resumes from the first checkpoint and finishes. Rank 0 writes the losses as JSON to ``out``.

Example:
    python trainer_run.py out.json workdir [--grad-accum 2] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments


class Tokens(torch.utils.data.Dataset):
    """``n`` fixed random token sequences (labels = inputs)."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 64, (n, 16), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config)


def arguments(workdir: str, opts: argparse.Namespace) -> TrainingArguments:
    return TrainingArguments(
        output_dir=workdir,
        max_steps=8,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=4,
        bf16=opts.bf16,
        use_cpu=True,
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def losses(history: list[dict]) -> list[float]:
    return [entry["loss"] for entry in history if "loss" in entry]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("workdir")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    opts = parser.parse_args()
    train, evaluation = Tokens(64, 1), Tokens(16, 2)
    args = arguments(opts.workdir, opts)
    first = Trainer(model=model(), args=args, train_dataset=train, eval_dataset=evaluation)
    first.train()
    metrics = first.evaluate()
    resumed = Trainer(model=model(), args=args, train_dataset=train, eval_dataset=evaluation)
    resumed.train(resume_from_checkpoint=os.path.join(opts.workdir, "checkpoint-4"))
    result = {
        "world_size": args.world_size,
        "train_losses": losses(first.state.log_history),
        "eval_loss": metrics["eval_loss"],
        "resumed_losses": losses(resumed.state.log_history),
        "checkpoints": sorted(d for d in os.listdir(opts.workdir) if d.startswith("checkpoint-")),
    }
    if args.process_index == 0:
        with open(opts.out, "w") as fh:
            json.dump(result, fh)


if __name__ == "__main__":
    main()
