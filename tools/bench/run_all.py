"""Run every accel benchmark side by side with the references and print the ratios.

    OMP_NUM_THREADS=1 uv run python tools/bench/run_all.py           # full run, ~5-6 min on an idle machine
    OMP_NUM_THREADS=1 uv run python tools/bench/run_all.py --quick   # few iterations, small sizes
    OMP_NUM_THREADS=1 uv run python tools/bench/run_all.py --smoke   # the test suite's run
    OMP_NUM_THREADS=1 uv run python tools/bench/run_all.py --quick --only collectives cli_startup

``--smoke`` checks that every benchmark runs end to end and prints its tables, at the least
CPU cost: ``--quick`` sizes, one round of everything, no warm-up rounds, the children of a
benchmark that starts one fresh process per measurement served by one process per library,
the page cache left alone. Its numbers are not measurements; use ``--quick`` or a full run
for those, which ``--smoke`` does not change.

1. ``collectives.py`` under ``torch.distributed.run`` with 2 CPU (gloo) processes: accel.ops
   vs Accelerate vs raw ``torch.distributed``, results checked equal before timing.
2. ``import_time.py``: import cost of ``accel.ops`` vs ``accelerate`` above ``import torch``.
   ``meta_init.py``: building a model with embeddings under ``init_empty_weights`` (fresh
   interpreters, results checked equal), and the whole ``accel estimate-memory`` process.
3. ``training_loop.py``: steps/s of a DDP training loop (2 gloo processes) with accel vs
   Accelerate vs raw torch, and the per-step Python overhead on 1 process.
   ``deepspeed_zero2.py``: steps/s of a DeepSpeed ZeRO-2 loop (2 gloo processes) through accel
   vs written directly against ``deepspeed.initialize``.
   ``ndp_steps.py``: steps/s of ``ParallelismConfig(dp_shard_size=2)`` vs plain FSDP2 (target
   >= 0.97x) and of accel's tensor parallelism vs hand-written ``parallelize_module`` (+
   ``fully_shard`` on 4 processes).
4. ``launch_overhead.py``: wall time of a 2-process CPU job started by ``accel launch`` vs
   ``torchrun`` vs ``accelerate launch``.
4. ``cli_startup.py``: wall time of ``accel --help`` / ``env --help`` / ``config default`` vs
   the same ``accelerate`` commands.
5. ``big_model_load.py``: time to first output and peak RSS of a 1.6 GB sharded checkpoint
   loaded all on CPU (cold/warm), half on disk and all on disk with ``accel.big_model`` vs
   Accelerate vs a raw read (``--quick``: 25 MB).
6. ``checkpoint_io.py``: ``save_state``/``load_state`` of a 1.07 GB model + AdamW state vs
   Accelerate, the blocked time of ``async_save``, ``save_model`` throughput vs ``dd``
   (``--quick``: 17 MB).

Exits non-zero if a benchmark fails (including a result mismatch); missed performance targets
are reported as ``MISSED`` in the tables but do not fail the run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from accel.launch.spawn import free_port

HERE = Path(__file__).resolve().parent


# The benchmarks in the order a whole run takes them (names of their scripts here).
BENCHMARKS = (
    "collectives",
    "import_time",
    "meta_init",
    "training_loop",
    "deepspeed_zero2",
    "ndp_steps",
    "launch_overhead",
    "cli_startup",
    "big_model_load",
    "checkpoint_io",
)


def benchmark_command(name: str, extra: list[str]) -> list[str]:
    """The command that runs benchmark ``name`` with the run-level flags ``extra``.

    Example:
        >>> benchmark_command("import_time", ["--smoke"])[1:]  # doctest: +ELLIPSIS
        ['.../import_time.py', '--smoke']
        >>> "torch.distributed.run" in benchmark_command("collectives", [])
        True
    """
    script = str(HERE / f"{name}.py")
    if name == "collectives":
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        return [*torchrun, "--master_port", str(free_port()), script, *extra]
    if name == "ndp_steps" and extra:
        # --quick and --smoke leave out the 4-process TP x FSDP part: 4 processes on 2 cores
        # beside the other tests; the full run keeps it.
        return [sys.executable, script, *extra, "--no-four"]
    return [sys.executable, script, *extra]


def run(command: list[str], env: dict[str, str]) -> None:
    """Run ``command`` with its output passed through; exit with its code if it fails.

    Example:
        >>> run([sys.executable, "-c", "pass"], dict(os.environ))
    """
    code = subprocess.call(command, env=env)
    if code != 0:
        print(f"FAILED ({code}): {' '.join(command)}", file=sys.stderr)
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark (or the ``--only`` ones) at the run level the flags choose.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="few iterations, small sizes")
    level.add_argument(
        "--smoke", action="store_true", help="fewest processes and rounds (the test suite's run)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only these benchmarks, in this order (of: {', '.join(BENCHMARKS)})",
    )
    args = parser.parse_args(argv)
    extra = ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        print("OMP_NUM_THREADS was not set; using OMP_NUM_THREADS=1")
        env["OMP_NUM_THREADS"] = "1"
    print(f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs", flush=True)
    start = time.perf_counter()
    for name in args.only or BENCHMARKS:
        run(benchmark_command(name, extra), env)
    print(f"\nall benchmarks done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
