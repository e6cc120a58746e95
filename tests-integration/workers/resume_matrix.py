"""Exact resume of the default setup and its variants, at several save points, in one launch.

``python -m torch.distributed.run --nproc_per_node 2 resume_matrix.py ROOT [--fresh CKPT]``
(see ``tests-integration/test_resume_exact.py``).

Every configuration trains the same small job: ``DataLoader(dataset, batch_size=8,
shuffle=True)`` (or an iterable dataset), a default-style ``Accelerator`` with
``gradient_accumulation_steps=2``, ``set_seed(0)`` before building, dropout, and samples that
draw noise from torch's RNG when loaded (in the worker processes with ``num_workers``), so
every source of randomness matters. For each configuration: one uninterrupted run, saving at
each save point; then, for each checkpoint, a resume that rebuilds everything
from ``set_seed(0)`` (as a fresh process would), calls ``load_state`` and trains to the end,
either positioned by accel (``auto``) or with ``skip_first_batches`` (``skip``, Accelerate's
recipe). Each resumed run records whether its losses and final weights are bitwise those of
the uninterrupted run.

Save points (per-process batches, ``L`` batches an epoch): ``3`` (mid first epoch, inside an
accumulation window), ``L`` (right after the last batch of the first epoch), ``L+2`` (mid
second epoch, at a window boundary), ``L+3`` (mid second epoch, inside a window).

With ``--fresh CKPT`` the job instead resumes the default configuration from ``CKPT`` (saved
at ``L+3`` by the matrix run) in this fresh process, with ``skip_first_batches``.

The uninterrupted run itself saves at every save point (a save changes nothing in the run),
so each configuration costs one run plus one resumed run per save point.
"""

from __future__ import annotations

import argparse
import os
import random
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from _ckpt_common import digest
from _harness import Checks
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from accel.core import Accelerator, DataLoaderConfiguration, set_seed

SAMPLES = 92  # 12 batches of 8, the last one short: even_batches matters
EPOCHS = 2


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(SAMPLES, 4, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return inputs, targets


class NoisyDataset(Dataset):
    """Map-style; each load adds noise from torch's RNG (the worker's, with num_workers)."""

    def __init__(self) -> None:
        self.inputs, self.targets = _data()

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.inputs[index] + 0.01 * torch.randn(4), self.targets[index], index


class Stream(IterableDataset):
    """Iterable, no state_dict: shuffles with torch's global RNG at the start of each pass."""

    def __init__(self) -> None:
        self.inputs, self.targets = _data()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for index in torch.randperm(SAMPLES).tolist():
            yield self.inputs[index], self.targets[index], index


class StatefulStream(IterableDataset):
    """Iterable with its own numpy RNG, exposed through state_dict/load_state_dict."""

    def __init__(self) -> None:
        self.inputs, self.targets = _data()
        self.rng = np.random.default_rng(99)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for index in self.rng.permutation(SAMPLES).tolist():
            yield self.inputs[index], self.targets[index], index

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])


@dataclass
class Config:
    dataset: Callable[[], Dataset] = NoisyDataset
    dataloader: dict[str, Any] = field(default_factory=dict)  # DataLoaderConfiguration
    loader: dict[str, Any] = field(default_factory=dict)  # DataLoader kwargs


CONFIGS: dict[str, Config] = {
    "default": Config(),
    "dispatch_batches": Config(dataloader={"dispatch_batches": True}),
    "split_batches": Config(dataloader={"split_batches": True}),
    "even_batches_false": Config(dataloader={"even_batches": False}),
    "num_workers": Config(loader={"num_workers": 2}),
    "seedable_sampler": Config(dataloader={"use_seedable_sampler": True}),
    "iterable": Config(dataset=Stream),  # dispatched from process 0 (the default)
    "iterable_stateful_shard": Config(
        dataset=StatefulStream, dataloader={"dispatch_batches": False}
    ),
}


class Progress:
    """Where the training loop stands; saved with register_for_checkpointing."""

    def __init__(self) -> None:
        self.epoch = 0
        self.step = 0  # batches done in this epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


class Job:
    """One script run: everything built from ``set_seed(0)``, as at the top of a script."""

    def __init__(self, config: Config) -> None:
        set_seed(0)
        self.accelerator = Accelerator(
            cpu=True,
            gradient_accumulation_steps=2,
            dataloader_config=DataLoaderConfiguration(**config.dataloader),
        )
        model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.25), nn.GELU(), nn.Linear(16, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)
        dataset = config.dataset()
        shuffle = not isinstance(dataset, IterableDataset)
        loader = DataLoader(dataset, batch_size=8, shuffle=shuffle, **config.loader)
        self.model, self.optimizer, self.loader = self.accelerator.prepare(model, optimizer, loader)
        self.progress = Progress()
        self.accelerator.register_for_checkpointing(self.progress)
        self.losses: list[float] = []

    def train(self, save_at: Mapping[int, str] | None = None, skip: bool = False) -> None:
        """Train to the end; ``save_state(save_at[n])`` after the n-th batch of this run."""
        save_at = save_at or {}
        done = 0
        while self.progress.epoch < EPOCHS:
            loader = self.loader
            if skip and self.progress.step:
                loader = self.accelerator.skip_first_batches(loader, self.progress.step)
            for inputs, targets, _ in loader:
                with self.accelerator.accumulate(self.model):
                    loss = F.mse_loss(self.model(inputs), targets)
                    self.accelerator.backward(loss)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                self.losses.append(loss.item())
                self.progress.step += 1
                done += 1
                if done in save_at:
                    self.accelerator.save_state(save_at[done])
            self.progress.epoch += 1
            self.progress.step = 0

    def weights(self) -> str:
        return digest(self.accelerator.unwrap_model(self.model).state_dict())

    def close(self) -> None:
        self.accelerator.free_memory()


def _scramble() -> None:
    """Randomness a new process would not share with the one that saved."""
    torch.manual_seed(4321)
    np.random.seed(4321)
    random.seed(4321)


def run_config(name: str, config: Config, root: Path, checks: Checks) -> None:
    """The uninterrupted run saves at every save point (saving changes nothing it does);
    each checkpoint is then resumed by a newly built job."""
    # Epoch length from a first pass of the dataloader alone (no training, nothing saved).
    per_epoch = sum(1 for _ in Job(config).loader)
    points = {
        "mid_first_epoch": 3,
        "end_of_epoch": per_epoch,
        "mid_second_epoch": per_epoch + 2,
        "mid_accumulation": per_epoch + 3,
    }
    folders = {point: str(root / f"{name}-{point}") for point in points}
    _scramble()
    reference = Job(config)
    reference.train(save_at={points[p]: folders[p] for p in points})
    ref_losses, ref_weights = reference.losses, reference.weights()
    reference.close()
    checks.record(f"{name}:per_epoch", per_epoch)
    modes = ("auto", "skip") if name in ("default", "iterable") else ("auto",)
    for mode in modes:
        for point, batches in points.items():
            _scramble()
            resumed = Job(config)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                resumed.accelerator.load_state(folders[point])
            resumed.train(skip=mode == "skip")
            checks.record(
                f"{name}:{mode}:{point}",
                {
                    "losses_equal": resumed.losses == ref_losses[batches:],
                    "weights_equal": resumed.weights() == ref_weights,
                    "warnings": [str(w.message)[:120] for w in caught],
                },
            )
            resumed.close()
    checks.record(f"{name}:reference_weights", ref_weights)
    checks.record(f"{name}:reference_losses", ref_losses)


def _check_for(name: str, root: Path, checks: Checks) -> Callable[[], None]:
    def check() -> None:
        run_config(name, CONFIGS[name], root, checks)

    check.__name__ = name
    return check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--fresh", default="")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    rank = int(os.environ["RANK"])
    checks = Checks()
    if args.fresh:

        @checks.add
        def fresh_resume() -> None:
            job = Job(CONFIGS["default"])
            job.accelerator.load_state(args.fresh)
            checks.record("resumed_at", job.progress.state_dict())
            job.train(skip=True)
            checks.record("losses", job.losses)
            checks.record("weights", job.weights())

    else:
        for name in args.configs.split(","):
            checks.add(_check_for(name, args.root, checks))
    checks.run(rank)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
