"""Steps/s of N-D parallel training on 2 gloo CPU processes: accel's ParallelismConfig paths
against the paths they replace.

1. ``ParallelismConfig(dp_shard_size=2)`` vs the same script with a plain
   ``FullyShardedDataParallelPlugin()`` (accel's FSDP2 path). Target: ratio >= 0.97.
2. ``ParallelismConfig(tp_size=2)`` with a plan vs a hand-written script: ``init_device_mesh``
   + ``parallelize_module`` (the same plan) + the same optimizer loop. Reported (overhead).
3. On 4 processes, ``ParallelismConfig(dp_shard_size=2, tp_size=2)`` vs a hand-written
   ``init_device_mesh((2, 2))`` + ``parallelize_module`` over ``tp`` + ``fully_shard`` over
   ``dp_shard``. Reported (overhead). On a 2-core machine 4 processes share the cores, so this
   ratio is noisier than the 2-process ones.

Model: 4 x ``Linear(512, 512)`` + ReLU, plan colwise/rowwise/colwise/rowwise, batch 64, SGD.
All variants run in one ``torch.distributed.run`` launch; rounds alternate between them and
the median round counts::

    OMP_NUM_THREADS=1 uv run python tools/bench/ndp_steps.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, BATCH = 512, 64
PLAN = {"0": "colwise", "2": "rowwise", "4": "colwise", "6": "rowwise"}
TARGET_DP_SHARD = 0.97


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: ``--quick`` for a smoke run.

    Example:
        >>> parse_args(["--quick"]).steps
        5
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (smoke test)")
    parser.add_argument("--smoke", action="store_true", help="fewest iterations (test suite)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds")
    parser.add_argument("--no-four", action="store_true", help="skip the 4-process TP x FSDP part")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--four", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 5 if args.quick else 40)
    args.rounds = args.rounds or (1 if args.quick or args.smoke else 5)
    return args


def _model():
    import torch

    torch.manual_seed(0)
    layers = []
    for _ in range(2):
        layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
        layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _steps_per_second(step, steps: int) -> float:
    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - started)


def _accel_variant(kind: str):
    import torch

    from accel.core import Accelerator, FullyShardedDataParallelPlugin, ParallelismConfig
    from accel.core.parallel_handlers import TorchTensorParallelConfig
    from accel.state import reset_state

    reset_state()
    handler = TorchTensorParallelConfig(tp_plan=PLAN)
    if kind == "fsdp_plugin":
        accelerator = Accelerator(fsdp_plugin=FullyShardedDataParallelPlugin())
    elif kind == "dp_shard":
        accelerator = Accelerator(parallelism_config=ParallelismConfig(dp_shard_size=2))
    elif kind == "dp_shard_tp":
        config = ParallelismConfig(dp_shard_size=2, tp_size=2, tp_handler=handler)
        accelerator = Accelerator(parallelism_config=config)
    else:
        accelerator = Accelerator(
            parallelism_config=ParallelismConfig(tp_size=2, tp_handler=handler)
        )
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    data = torch.randn(BATCH, WIDTH)

    def step() -> None:
        accelerator.backward(model(data).square().mean())
        optimizer.step()
        optimizer.zero_grad()

    return step


def _hand_tp(fsdp: bool = False):
    """The hand-written reference: TP by ``parallelize_module``, then (``fsdp``) FSDP2's
    ``fully_shard`` over the ``dp_shard`` dimension of a 2 x 2 mesh."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    shape, names = ((2, 2), ("dp_shard", "tp")) if fsdp else ((2,), ("tp",))
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=names)
    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    model = parallelize_module(_model(), mesh["tp"], {k: styles[v]() for k, v in PLAN.items()})
    if fsdp:
        model = fully_shard(model, mesh=mesh["dp_shard"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    data = torch.randn(BATCH, WIDTH)

    def step() -> None:
        model(data).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def worker(args: argparse.Namespace) -> None:
    """Build every variant once, then time them in alternating rounds (rank 0 writes JSON).

    Example:
        >>> worker(parse_args(["--quick", "--worker"]))  # doctest: +SKIP
    """
    import torch.distributed as dist

    steps = {}
    if args.four:
        steps["dp_shard_tp"] = _accel_variant("dp_shard_tp")
        steps["hand_tp_fsdp"] = _hand_tp(fsdp=True)
    else:
        for kind in ("fsdp_plugin", "dp_shard", "tp"):
            steps[kind] = _accel_variant(kind)
        steps["hand_tp"] = _hand_tp()
    rates: dict[str, list[float]] = {kind: [] for kind in steps}
    for _ in range(args.rounds):
        for kind, step in steps.items():
            dist.barrier()
            rates[kind].append(_steps_per_second(step, args.steps))
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps(rates))
    dist.destroy_process_group()


def _launch(args: argparse.Namespace, nproc: int) -> dict[str, float]:
    """Run the worker on ``nproc`` processes; median steps/s of each variant."""
    from accel.launch.spawn import free_port

    out = Path(tempfile.mkdtemp(prefix="ndp-bench-")) / "rates.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, "--worker",
               "--out", str(out), "--steps", str(args.steps), "--rounds", str(args.rounds)]  # fmt: skip
    if nproc == 4:
        command.append("--four")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env)
    return {k: statistics.median(v) for k, v in json.loads(out.read_text()).items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Launch the worker on 2 (then 4) processes and print steps/s and the ratios.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    args = parse_args(argv)
    rates = _launch(args, 2)
    if not args.no_four:
        rates.update(_launch(args, 4))
    for kind, rate in rates.items():
        print(f"{kind:12s} {rate:8.1f} steps/s")
    ratios = {
        "dp_shard_size=2 / plain FSDP2": rates["dp_shard"] / rates["fsdp_plugin"],
        "accel TP / hand-written parallelize_module": rates["tp"] / rates["hand_tp"],
    }
    if "hand_tp_fsdp" in rates:
        name = "accel dp_shard 2 x tp 2 / hand-written parallelize_module + fully_shard"
        ratios[name] = rates["dp_shard_tp"] / rates["hand_tp_fsdp"]
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.3f}")
    verdict = "meets" if ratios["dp_shard_size=2 / plain FSDP2"] >= TARGET_DP_SHARD else "misses"
    print(f"dp_shard_size=2 {verdict} the target ratio >= {TARGET_DP_SHARD}")
    return ratios


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.worker:
        worker(parsed)
    else:
        main()
