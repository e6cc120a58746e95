"""Side-by-side benchmark of a DDP training loop: accel vs real Accelerate vs raw torch.

Run it with plain Python (``run_all.py`` does this for you); it launches the workers itself::

    OMP_NUM_THREADS=1 uv run python tools/bench/training_loop.py [--quick | --smoke]

1. Throughput (steps/s) of a training loop on 2 gloo processes (``torch.distributed.run
   --nproc_per_node 2``), for an MLP (3 ``Linear(512)`` + ReLU, batch 64 per process) and a
   ``TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True)``
   (sequence 32, batch 16 per process). One launch times three variants of the same loop in
   rotating order, on the same synthetic data (not shuffled, so every step sees the same
   global batch in every variant): the raw loop (hand-written ``DistributedDataParallel`` +
   ``DistributedSampler`` + ``DataLoader``), and the library loop (``prepare`` +
   ``accumulate`` + ``backward``, identical for accel and Accelerate; accel's
   ``Accelerator(cpu=True)`` starts the gloo group, Accelerate's adopts it, and both are
   checked to see 2 processes). Before timing, each variant runs the warm-up epoch from the
   same initial weights and the resulting weights are checked to agree with the raw loop's.
   A timed block is one epoch of ``--steps`` steps after a barrier; the reported number is
   the median over ``--repeats`` blocks of the slowest process.
2. Per-step Python overhead of ``accumulate`` + ``backward`` + wrapped ``optimizer.step`` +
   ``zero_grad`` over the raw loop, on 1 process with a tiny model (framework overhead
   dominates): blocks of ``--iters`` iterations of each loop, in rotating order, median.

Exits non-zero if a worker fails or the weights differ; missed performance targets are
reported as ``MISSED`` in the tables but do not fail the run.
"""

from __future__ import annotations

import argparse
import copy
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

HERE = Path(__file__).resolve().parent
WORLD = 2
TARGET_VS_RAW = 0.97
TARGET_VS_ACCELERATE = 1.0
LIBRARIES = ("accel", "accelerate")
# label, per-process batch size
MODELS = {
    "mlp": ("MLP 3xLinear(512)+ReLU, batch 64", 64),
    "transformer": ("TransformerEncoderLayer(128), 16x32", 16),
}


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
    parser.add_argument("--iters", type=int, default=None, help="iterations per overhead block")
    parser.add_argument("--worker", choices=("ddp", "overhead"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = (100, 20, 6, 2000)
    if args.quick or args.smoke:
        defaults = (3, 2, 1, 20) if args.smoke else (10, 3, 1, 100)
    for name, value in zip(("steps", "warmup", "repeats", "iters"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# -- worker side (imports torch) ----------------------------------------------------------


def build_model(name: str) -> Any:
    """A fresh, deterministically initialized model (``"mlp"`` or ``"transformer"``).

    Example:
        >>> build_model("mlp")[0].in_features  # doctest: +SKIP
        512
    """
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
    return nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True)


def make_dataset(name: str, samples: int) -> Any:
    """Synthetic ``TensorDataset`` of ``samples`` (input, target) pairs for model ``name``.

    Example:
        >>> len(make_dataset("mlp", 8))  # doctest: +SKIP
        8
    """
    import torch
    from torch.utils.data import TensorDataset

    gen = torch.Generator().manual_seed(1)
    if name == "mlp":
        return TensorDataset(
            torch.randn(samples, 512, generator=gen),
            torch.randint(0, 10, (samples,), generator=gen),
        )
    return TensorDataset(
        torch.randn(samples, 32, 128, generator=gen), torch.randn(samples, 32, 128, generator=gen)
    )


def loss_of(name: str, output: Any, target: Any) -> Any:
    """The model's loss: cross-entropy for the MLP, MSE for the transformer.

    Example:
        >>> loss_of("mlp", torch.zeros(2, 10), torch.zeros(2, dtype=torch.long))  # doctest: +SKIP
        tensor(2.3026)
    """
    import torch.nn.functional as F

    if name == "mlp":
        return F.cross_entropy(output, target)
    return F.mse_loss(output, target)


def raw_variant(name: str, datasets: dict[str, Any], batch: int) -> tuple[Any, Callable]:
    """The hand-written DDP loop: returns (model, ``epoch(kind)``) over the given datasets.

    Example:
        >>> model, epoch = raw_variant("mlp", datasets, 64)  # doctest: +SKIP
    """
    import torch
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    model = DistributedDataParallel(build_model(name))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    samplers = {kind: DistributedSampler(ds, shuffle=False) for kind, ds in datasets.items()}
    loaders = {
        kind: DataLoader(ds, batch_size=batch, sampler=samplers[kind])
        for kind, ds in datasets.items()
    }
    epochs = dict.fromkeys(datasets, 0)

    def epoch(kind: str) -> None:
        """One pass over the ``kind`` loader."""
        samplers[kind].set_epoch(epochs[kind])
        epochs[kind] += 1
        for x, y in loaders[kind]:
            loss = loss_of(name, model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    return model.module, epoch


def library_variant(
    accelerator: Any, name: str, datasets: dict[str, Any], batch: int
) -> tuple[Any, Callable]:
    """The same loop written for ``accelerator`` (accel's or Accelerate's): (model, epoch).

    Example:
        >>> model, epoch = library_variant(Accelerator(cpu=True), "mlp", datasets, 64)  # doctest: +SKIP
    """
    import torch
    from torch.utils.data import DataLoader

    model = build_model(name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    kinds = list(datasets)
    loaders = [DataLoader(datasets[kind], batch_size=batch, shuffle=False) for kind in kinds]
    model, optimizer, *loaders = accelerator.prepare(model, optimizer, *loaders)
    prepared = dict(zip(kinds, loaders))

    def epoch(kind: str) -> None:
        """One pass over the ``kind`` loader."""
        for x, y in prepared[kind]:
            with accelerator.accumulate(model):
                loss = loss_of(name, model(x), y)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()

    return accelerator.unwrap_model(model), epoch


def make_accelerator(lib: str) -> Any:
    """``Accelerator(cpu=True)`` of accel or of Accelerate; checks it sees 2 processes.

    Example:
        >>> make_accelerator("accel").num_processes  # doctest: +SKIP
        2
    """
    if lib == "accel":
        from accel.core import Accelerator
    else:
        from accelerate import Accelerator
    accelerator = Accelerator(cpu=True)
    if accelerator.process_index == 0:
        print(
            f"[{lib}] Accelerator(cpu=True): num_processes={accelerator.num_processes}, "
            f"distributed_type={accelerator.distributed_type}, device={accelerator.device}",
            flush=True,
        )
    assert accelerator.num_processes == WORLD, f"{lib} sees {accelerator.num_processes} processes"
    return accelerator


def ddp_worker(args: argparse.Namespace) -> None:
    """Under torchrun: time raw, accel and Accelerate on both models; rank 0 writes JSON.

    accel's ``Accelerator`` starts the gloo group; Accelerate's adopts it (each library keeps
    its own state singletons, so they do not interfere).

    Example:
        >>> ddp_worker(parse_args(["--worker", "ddp"]))  # doctest: +SKIP
    """
    import torch
    import torch.distributed as dist

    accelerators = {lib: make_accelerator(lib) for lib in LIBRARIES}
    rank = dist.get_rank()
    results: dict[str, Any] = {"models": {}}
    try:
        for name, (_, batch) in MODELS.items():
            global_batch = batch * WORLD
            datasets = {
                "warm": make_dataset(name, args.warmup * global_batch),
                "main": make_dataset(name, args.steps * global_batch),
            }
            variants = {"raw": raw_variant(name, datasets, batch)}
            for lib, accelerator in accelerators.items():
                variants[lib] = library_variant(accelerator, name, datasets, batch)
            # Warm-up, from identical weights and seeds, then check every variant agrees.
            for _, epoch in variants.values():
                torch.manual_seed(2)
                epoch("warm")
            # The ranks see the same global batches but split differently (interleaved vs
            # contiguous), so float sums differ: compare the gap to how far the weights moved.
            ref = list(variants["raw"][0].parameters())
            init = list(build_model(name).parameters())
            moved = max((a - b).abs().max().item() for a, b in zip(ref, init))
            diffs = {}
            for lib in LIBRARIES:
                got = list(variants[lib][0].parameters())
                diffs[lib] = max((a - b).abs().max().item() for a, b in zip(ref, got))
                assert diffs[lib] <= 0.1 * moved, (
                    f"{name}: {lib} weights differ from raw by {diffs[lib]} (moved {moved})"
                )
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
            results["models"][name] = {
                "steps_per_s": {
                    v: args.steps / statistics.median(row)
                    for v, row in zip(variants, slowest.tolist())
                },
                "max_weight_diff": diffs,
                "max_weight_moved": moved,
            }
        if rank == 0 and args.out:
            Path(args.out).write_text(json.dumps(results))
    finally:
        dist.barrier()
        dist.destroy_process_group()


def overhead_worker(args: argparse.Namespace) -> None:
    """One process: µs per step of the raw, accel and Accelerate loops on a tiny model.

    Example:
        >>> overhead_worker(parse_args(["--worker", "overhead", "--quick"]))  # doctest: +SKIP
    """
    import torch
    from accelerate import Accelerator as AccelerateAccelerator

    from accel.core import Accelerator as AccelAccelerator

    torch.manual_seed(0)
    base = torch.nn.Linear(8, 1)
    x = torch.randn(4, 8)

    def raw_loop(n: int) -> None:
        """The plain loop."""
        model = loops["raw_model"]
        optimizer = loops["raw_opt"]
        for _ in range(n):
            loss = model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    def library_loop(accelerator: Any) -> Callable[[int], None]:
        """The accelerator loop, for ``accelerator``."""
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        model, optimizer = accelerator.prepare(model, optimizer)

        def loop(n: int) -> None:
            """``n`` steps inside ``accumulate``."""
            for _ in range(n):
                with accelerator.accumulate(model):
                    loss = model(x).pow(2).mean()
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()

        return loop

    loops: dict[str, Any] = {"raw_model": copy.deepcopy(base)}
    loops["raw_opt"] = torch.optim.SGD(loops["raw_model"].parameters(), lr=1e-3)
    impls = {
        "raw": raw_loop,
        "accel": library_loop(AccelAccelerator(cpu=True)),
        "accelerate": library_loop(AccelerateAccelerator(cpu=True)),
    }
    for fn in impls.values():
        fn(max(args.iters // 10, 10))
    samples: dict[str, list[float]] = {name: [] for name in impls}
    names = list(impls)
    blocks = 1 if args.quick or args.smoke else 7
    for block in range(blocks):
        rotation = names[block % len(names) :] + names[: block % len(names)]
        for name in rotation:
            start = time.perf_counter()
            impls[name](args.iters)
            samples[name].append((time.perf_counter() - start) / args.iters * 1e6)
    result = {"us_per_step": {n: statistics.median(s) for n, s in samples.items()}}
    result["blocks"] = blocks
    Path(args.out).write_text(json.dumps(result))


# -- driver side (no torch import) --------------------------------------------------------


def verdict(ok: bool) -> str:
    """``"ok"`` or ``"MISSED"``.

    Example:
        >>> verdict(False)
        'MISSED'
    """
    return "ok" if ok else "MISSED"


def ddp_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The throughput table from the 2-process launch's results.

    Example:
        >>> rates = {"raw": 100.0, "accel": 99.0, "accelerate": 95.0}
        >>> diffs = {"accel": 0.0, "accelerate": 0.0}
        >>> m = {"steps_per_s": rates, "max_weight_diff": diffs, "max_weight_moved": 1.0}
        >>> table = ddp_table({"models": dict.fromkeys(MODELS, m)}, parse_args(["--quick"]))
        >>> "accel/raw = 0.990x" in table, "accel/accelerate = 1.042x" in table
        (True, True)
    """
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    header = " | ".join(
        [
            f"{'training loop (steps/s)':<50}",
            "accel st/s",
            "accelerate",
            "  raw st/s",
            "ratio",
            "target",
        ]
    )
    lines = [
        f"\ntraining loop: {WORLD} processes (gloo on CPU, torchrun), OMP_NUM_THREADS={threads}, "
        f"SGD(momentum), unshuffled synthetic data; one launch, raw/accel/accelerate in rotating "
        f"order; steps/s = {args.steps} steps / median of {args.repeats} blocks (after "
        f"{args.warmup} warm-up steps), slowest process",
        header,
        "-" * len(header),
    ]
    notes = []
    for name, (label, _) in MODELS.items():
        model = result["models"][name]
        rate = model["steps_per_s"]
        vs_raw = rate["accel"] / rate["raw"]
        vs_acc = rate["accel"] / rate["accelerate"]
        cells = f"{rate['accel']:>10.1f} | {rate['accelerate']:>10.1f} | {rate['raw']:>10.1f}"
        lines.append(
            f"{label + ' vs raw':<50} | {cells} | accel/raw = {vs_raw:.3f}x | "
            f"target >= {TARGET_VS_RAW:.2f}x {verdict(vs_raw >= TARGET_VS_RAW)}"
        )
        lines.append(
            f"{label + ' vs accelerate':<50} | {cells} | accel/accelerate = {vs_acc:.3f}x | "
            f"target >= {TARGET_VS_ACCELERATE:.2f}x {verdict(vs_acc >= TARGET_VS_ACCELERATE)}"
        )
        diffs = ", ".join(f"{lib} {model['max_weight_diff'][lib]:.1e}" for lib in LIBRARIES)
        notes.append(
            f"  {name}: accelerate/raw = {rate['accelerate'] / rate['raw']:.3f}x; weights after "
            f"warm-up vs raw: max diff {diffs} (weights moved up to "
            f"{model['max_weight_moved']:.1e})"
        )
    lines.extend(notes)
    return "\n".join(lines)


def overhead_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The per-step overhead table (µs/step and the difference to the raw loop).

    Example:
        >>> r = {"us_per_step": {"raw": 100.0, "accel": 110.0, "accelerate": 150.0}, "blocks": 1}
        >>> "accelerate/accel = 1.36x step time" in overhead_table(r, parse_args(["--quick"]))
        True
    """
    us = result["us_per_step"]
    ours, theirs = us["accel"] - us["raw"], us["accelerate"] - us["raw"]
    header = " | ".join(
        [
            f"{'1 process, Linear(8,1)':<50}",
            "  accel us",
            "accelerate",
            "    raw us",
            "ratio",
            "target",
        ]
    )
    return "\n".join(
        [
            f"\nper-step overhead: 1 process, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"tiny model (Linear(8,1), batch 4, SGD); median of {result['blocks']} blocks of "
            f"{args.iters} steps, loops in rotating order",
            header,
            "-" * len(header),
            f"{'step time (us/step)':<50} | {us['accel']:>10.2f} | {us['accelerate']:>10.2f} | "
            f"{us['raw']:>10.2f} | accel/raw = {us['accel'] / us['raw']:.3f}x | -",
            f"{'step overhead over raw (us/step)':<50} | {ours:>+10.2f} | {theirs:>+10.2f} | "
            f"{0.0:>10.2f} | accelerate/accel = {us['accelerate'] / us['accel']:.2f}x step time | "
            f"target accel overhead <= accelerate's {verdict(ours <= theirs)}",
            "(overheads within a few us of 0 are noise: the blocks' medians vary by that much)",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Launch the 2-process run and the 1-process overhead run, then print the tables.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    args = parse_args(argv)
    if args.worker == "ddp":
        ddp_worker(args)
        return
    if args.worker == "overhead":
        overhead_worker(args)
        return
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    counts = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    counts += ["--repeats", str(args.repeats), "--iters", str(args.iters)]
    counts += ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.json")
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node"]
        command += [str(WORLD), "--master_port", str(free_port()), __file__]
        run([*command, "--worker", "ddp", "--out", out, *counts], env)
        ddp = json.loads(Path(out).read_text())
        out = str(Path(tmp) / "overhead.json")
        run([sys.executable, __file__, "--worker", "overhead", "--out", out, *counts], env)
        overhead = json.loads(Path(out).read_text())
    print(ddp_table(ddp, args))
    print(overhead_table(overhead, args), flush=True)


if __name__ == "__main__":
    main()
