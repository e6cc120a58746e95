"""Side-by-side benchmark of a DeepSpeed ZeRO-2 training loop: through accel vs written
directly against ``deepspeed.initialize``.

Run it with plain Python (``run_all.py`` does this for you); it launches the workers itself::

    OMP_NUM_THREADS=1 uv run python tools/bench/deepspeed_zero2.py [--quick | --smoke]

One launch of 2 gloo processes on CPU (``torch.distributed.run``) builds two engines of the
same MLP (3 ``Linear(512)`` + ReLU, batch 64 per process, ``AdamW``, ZeRO stage 2):

- direct: ``deepspeed.initialize(model, optimizer, config)`` with a hand-written config,
  ``DistributedSampler`` + ``DataLoader``, and ``engine(x)``, ``engine.backward(loss)``,
  ``engine.step()``;
- accel: ``Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))``,
  ``prepare(model, optimizer, loader)`` (config "auto" values filled), and the usual
  ``accumulate`` + ``accelerator.backward`` + ``optimizer.step`` + ``zero_grad`` loop.

Both run the warm-up epoch from the same weights, and their weights are checked to agree
(the two loaders split the global batch differently, so float sums differ slightly: the gap
is compared to how far the weights moved). A timed block is one epoch of ``--steps`` steps
after a barrier, variants in rotating order; the number reported is the median over
``--repeats`` blocks of the slower process (short blocks, many of them: on a shared machine the
load drifts, and alternating often keeps both variants under the same load); the best block
of each is shown too. Target: accel >= 0.97x direct. Exits non-zero if
a worker fails or the weights disagree; a missed target is reported as ``MISSED``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from run_all import free_port, run

WORLD = 2
BATCH = 64
TARGET = 0.97
LABEL = "ZeRO-2 MLP 3xLinear(512)+ReLU, batch 64, AdamW"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line: ``--quick`` for a smoke run, or explicit counts.

    Example:
        >>> parse_args(["--quick"]).steps
        10
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (smoke test)")
    parser.add_argument("--smoke", action="store_true", help="fewest iterations (test suite)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks per variant")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = (3, 2, 1) if args.smoke else (10, 3, 1) if args.quick else (20, 20, 25)
    for name, value in zip(("steps", "warmup", "repeats"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# -- worker side (imports torch and deepspeed) ---------------------------------------------


def build_model() -> Any:
    """A fresh, deterministically initialized MLP.

    Example:
        >>> build_model()[0].in_features  # doctest: +SKIP
        512
    """
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def make_dataset(samples: int) -> Any:
    """Synthetic classification data: ``samples`` (input, label) pairs.

    Example:
        >>> len(make_dataset(8))  # doctest: +SKIP
        8
    """
    import torch
    from torch.utils.data import TensorDataset

    gen = torch.Generator().manual_seed(1)
    return TensorDataset(
        torch.randn(samples, 512, generator=gen), torch.randint(0, 10, (samples,), generator=gen)
    )


def direct_variant(datasets: dict[str, Any]) -> tuple[Any, Callable[[str], None]]:
    """The loop written against ``deepspeed.initialize``: (engine, ``epoch(kind)``).

    Example:
        >>> engine, epoch = direct_variant(datasets)  # doctest: +SKIP
    """
    import deepspeed
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, DistributedSampler

    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = {
        "train_micro_batch_size_per_gpu": BATCH,
        "train_batch_size": BATCH * WORLD,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 2},
        "zero_allow_untested_optimizer": True,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    samplers = {kind: DistributedSampler(ds, shuffle=False) for kind, ds in datasets.items()}
    loaders = {
        kind: DataLoader(ds, batch_size=BATCH, sampler=samplers[kind])
        for kind, ds in datasets.items()
    }

    def epoch(kind: str) -> None:
        """One pass over the ``kind`` loader."""
        for x, y in loaders[kind]:
            loss = F.cross_entropy(engine(x), y)
            engine.backward(loss)
            engine.step()

    return engine, epoch


def accel_variant(accelerator: Any, datasets: dict[str, Any]) -> tuple[Any, Callable[[str], None]]:
    """The same loop through accel's ``Accelerator``: (engine, ``epoch(kind)``).

    Example:
        >>> engine, epoch = accel_variant(accelerator, datasets)  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    kinds = list(datasets)
    loaders = [DataLoader(datasets[kind], batch_size=BATCH, shuffle=False) for kind in kinds]
    model, optimizer, *loaders = accelerator.prepare(model, optimizer, *loaders)
    prepared = dict(zip(kinds, loaders))

    def epoch(kind: str) -> None:
        """One pass over the ``kind`` loader."""
        for x, y in prepared[kind]:
            with accelerator.accumulate(model):
                loss = F.cross_entropy(model(x), y)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()

    return model, epoch


def worker(args: argparse.Namespace) -> None:
    """Under torchrun: time both variants; rank 0 writes the results as JSON.

    Example:
        >>> worker(parse_args(["--worker", "--quick"]))  # doctest: +SKIP
    """
    import torch
    import torch.distributed as dist

    from accel.core import Accelerator
    from accel.deepspeed import DeepSpeedPlugin

    accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))
    assert accelerator.num_processes == WORLD, accelerator.num_processes
    try:
        datasets = {
            "warm": make_dataset(args.warmup * BATCH * WORLD),
            "main": make_dataset(args.steps * BATCH * WORLD),
        }
        variants = {
            "direct": direct_variant(datasets),
            "accel": accel_variant(accelerator, datasets),
        }
        for _, epoch in variants.values():
            epoch("warm")
        init = list(build_model().parameters())
        direct = list(variants["direct"][0].module.parameters())
        ours = list(variants["accel"][0].module.parameters())
        moved = max((a - b).abs().max().item() for a, b in zip(direct, init))
        diff = max((a - b).abs().max().item() for a, b in zip(direct, ours))
        assert diff <= 0.1 * moved, f"accel weights differ from direct by {diff} (moved {moved})"
        samples: dict[str, list[float]] = {v: [] for v in variants}
        order = list(variants)
        for repeat in range(args.repeats):
            shift = repeat % len(order)
            for variant in order[shift:] + order[:shift]:
                dist.barrier()
                start = time.perf_counter()
                variants[variant][1]("main")
                samples[variant].append(time.perf_counter() - start)
        slowest = torch.tensor([samples[v] for v in variants], dtype=torch.float64)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        result = {
            "steps_per_s": {
                v: args.steps / statistics.median(row) for v, row in zip(variants, slowest.tolist())
            },
            "best_steps_per_s": {
                v: args.steps / min(row) for v, row in zip(variants, slowest.tolist())
            },
            "max_weight_diff": diff,
            "max_weight_moved": moved,
        }
        if dist.get_rank() == 0 and args.out:
            Path(args.out).write_text(json.dumps(result))
    finally:
        dist.barrier()
        dist.destroy_process_group()


# -- driver side (no torch import) --------------------------------------------------------


def table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The throughput table from the worker's results.

    Example:
        >>> rates = {"direct": 50.0, "accel": 49.0}
        >>> r = {"steps_per_s": rates, "best_steps_per_s": rates, "max_weight_diff": 0.0,
        ...      "max_weight_moved": 1.0}
        >>> "accel/deepspeed = 0.980x" in table(r, parse_args(["--quick"]))
        True
    """
    rate = result["steps_per_s"]
    ratio = rate["accel"] / rate["direct"]
    verdict = "ok" if ratio >= TARGET else "MISSED"
    header = " | ".join(
        [f"{'DeepSpeed loop (steps/s)':<50}", "accel st/s", "deepspeed", "ratio", "target"]
    )
    return "\n".join(
        [
            f"\nDeepSpeed ZeRO-2: {WORLD} processes (gloo on CPU, torchrun), OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; one launch, accel and direct "
            f"deepspeed.initialize in rotating order; steps/s = {args.steps} steps / median of "
            f"{args.repeats} blocks (after {args.warmup} warm-up steps), slower process",
            header,
            "-" * len(header),
            f"{LABEL:<50} | {rate['accel']:>10.1f} | {rate['direct']:>9.1f} | "
            f"accel/deepspeed = {ratio:.3f}x | target >= {TARGET:.2f}x {verdict}",
            f"  best block: accel {result['best_steps_per_s']['accel']:.1f}, direct "
            f"{result['best_steps_per_s']['direct']:.1f} steps/s, accel/deepspeed = "
            f"{result['best_steps_per_s']['accel'] / result['best_steps_per_s']['direct']:.3f}x",
            f"  weights after warm-up, accel vs direct: max diff {result['max_weight_diff']:.1e} "
            f"(weights moved up to {result['max_weight_moved']:.1e})",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Launch the 2-process worker and print the table.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    counts = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    counts += ["--repeats", str(args.repeats)] + (
        ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "zero2.json")
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node"]
        command += [str(WORLD), "--master_port", str(free_port()), __file__]
        run([*command, "--worker", "--out", out, *counts], env)
        result = json.loads(Path(out).read_text())
    print(table(result, args), flush=True)


if __name__ == "__main__":
    main()
