"""Smoke test: the side-by-side benchmarks run end to end (no timing assertions).

``run_all.py --smoke`` runs every benchmark program through the code paths of a ``--quick``
run (and prints the same lines) at the least CPU cost: one round, no warm-up rounds, the
benchmarks that start a fresh process per measurement served by one process per library.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from background import background
from launching import base_environment

ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = ROOT / "tools" / "bench" / "run_all.py"
OPERATIONS = [
    "gather nested (100 tensors)",
    "pad_across_processes nested (100)",
    "reduce(sum) nested (100 tensors)",
    "broadcast nested (100 tensors)",
    "gather 4M float32",
    "reduce(sum) 4M float32 (raw: clone)",
    "reduce(sum) 4M float32 (raw: in-place)",
    "import accel.ops + .gather",
    "MLP 3xLinear(512)+ReLU, batch 64 vs raw",
    "MLP 3xLinear(512)+ReLU, batch 64 vs accelerate",
    "TransformerEncoderLayer(128), 16x32 vs raw",
    "TransformerEncoderLayer(128), 16x32 vs accelerate",
    "step overhead over raw (us/step)",
    "ZeRO-2 MLP 3xLinear(512)+ReLU, batch 64, AdamW",
]

CHECKPOINT_LINES = [
    "save_state (returned), accelerate/accel",
    "save_state (on disk), accelerate/accel",
    "load_state (cold cache), accelerate/accel",
    "load_state (warm cache), accelerate/accel",
    "blocked / synchronous save (warm)",
    "save_model / dd throughput (page cache)",
]


@background(seconds=240, timeout=900)
def bench_smoke_run(out: Path) -> subprocess.CompletedProcess[str]:
    """``run_all.py --smoke``, in the background (see background.py)."""
    env = {**base_environment(), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(RUN_ALL), "--smoke"],
        capture_output=True,
        text=True,
        timeout=900,  # the DeepSpeed launch alone takes about a minute here
        env=env,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_run_all_smoke_prints_a_ratio_for_every_operation(
    bench_smoke_run: subprocess.CompletedProcess[str],
) -> None:
    """``run_all.py --smoke`` exits 0 and prints one ratio line per benchmarked operation."""
    result = bench_smoke_run
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for operation in OPERATIONS:
        pattern = (
            re.escape(operation)
            + r" +\|.*\| (accel/raw|accelerate/accel|accel/accelerate|accel/deepspeed) = [0-9.]+x?"
        )
        assert re.search(pattern, result.stdout), f"no ratio line for {operation!r}:\n{output}"
    for line in CHECKPOINT_LINES:
        assert re.search(re.escape(line) + r" +[0-9.]+x", result.stdout), f"no {line!r}:\n{output}"
