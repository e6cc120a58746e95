"""Wall time of starting a 2-process CPU job: ``accel launch`` vs ``torchrun`` vs Accelerate.

Each job starts 2 gloo processes that set up the process group, meet at a barrier and exit:

- accel: ``accel launch --cpu --num_processes 2`` of a script using ``accel.state.PartialState``
- torchrun: ``torchrun --nproc_per_node 2`` of the same job with raw ``init_process_group``
- accelerate: ``accelerate launch --multi_gpu --num_processes 2`` with ``ACCELERATE_USE_CPU=1``
  of the job using ``accelerate.PartialState``

The three run alternately, several times each; the median is reported::

    OMP_NUM_THREADS=1 uv run python tools/bench/launch_overhead.py [--quick | --smoke] [--repeat N]

Targets: accel <= 1.05x torchrun, and faster than Accelerate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from accel.launch.spawn import free_port

BIN = Path(sys.executable).parent
TARGET_VS_TORCHRUN = 1.05

SCRIPTS = {
    "accel": (
        "from accel.state import PartialState\n"
        "state = PartialState()\n"
        "assert state.num_processes == 2\n"
        "state.wait_for_everyone()\n"
        "state.destroy_process_group()\n"
    ),
    "torchrun": (
        "import torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "assert dist.get_world_size() == 2\n"
        "dist.barrier()\n"
        "dist.destroy_process_group()\n"
    ),
    "accelerate": (
        "from accelerate import PartialState\n"
        "state = PartialState(cpu=True)  # Accelerate's PartialState ignores ACCELERATE_USE_CPU\n"
        "assert state.num_processes == 2\n"
        "state.wait_for_everyone()\n"
        "state.destroy_process_group()\n"
    ),
}


def command(kind: str, script: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start job ``kind``.

    Example:
        >>> command("torchrun", Path("s.py"))[0][1:3]
        ['-m', 'torch.distributed.run']
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL_", "ACCELERATE_"))}
    env.setdefault("OMP_NUM_THREADS", "1")
    if kind == "accel":
        return [
            str(BIN / "accel"),
            "launch",
            "-q",
            "--cpu",
            "--num_processes",
            "2",
            str(script),
        ], env
    if kind == "torchrun":
        argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        return [*argv, "--master_port", str(free_port()), str(script)], env
    env["ACCELERATE_USE_CPU"] = "1"
    env["HF_HOME"] = tempfile.mkdtemp(prefix="bench-hf-")  # no user config file
    argv = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    return [*argv, "--main_process_port", str(free_port()), str(script)], env


def time_once(kind: str, script: Path) -> float:
    """Seconds from starting job ``kind`` to its successful exit.

    Example:
        >>> time_once("torchrun", Path("job.py"))  # doctest: +SKIP
        8.1
    """
    argv, env = command(kind, script)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{kind} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    """Time the three launchers alternately and print medians and ratios.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run each (smoke test)")
    parser.add_argument("--smoke", action="store_true", help="one run each (test suite)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per launcher (median)")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick or args.smoke else args.repeat
    folder = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    scripts = {}
    for kind, text in SCRIPTS.items():
        scripts[kind] = folder / f"{kind}_job.py"
        scripts[kind].write_text(text)
    times: dict[str, list[float]] = {kind: [] for kind in SCRIPTS}
    for _ in range(repeat):
        for kind in SCRIPTS:
            times[kind].append(time_once(kind, scripts[kind]))
    median = {kind: statistics.median(values) for kind, values in times.items()}
    print(f"\nlaunch overhead: 2 CPU processes, barrier, exit (median of {repeat})")
    for kind, value in median.items():
        runs = ", ".join(f"{t:.2f}" for t in times[kind])
        print(f"  {kind:<11} {value:6.2f} s   [{runs}]")
    vs_torchrun = median["accel"] / median["torchrun"]
    vs_accelerate = median["accel"] / median["accelerate"]
    ok_torchrun = "ok" if vs_torchrun <= TARGET_VS_TORCHRUN else "MISSED"
    ok_accelerate = "ok" if vs_accelerate < 1.0 else "MISSED"
    print(
        f"  accel / torchrun   {vs_torchrun:.2f}x  (target <= {TARGET_VS_TORCHRUN}x: {ok_torchrun})"
    )
    print(f"  accel / accelerate {vs_accelerate:.2f}x  (target < 1.00x: {ok_accelerate})")


if __name__ == "__main__":
    main()
