"""Smoke test: the side-by-side benchmarks run end to end (no timing assertions).

``run_all.py --smoke`` runs every benchmark program through the code paths of a ``--quick``
run (and prints the same lines) at the least CPU cost: one round, no warm-up rounds, the
benchmarks that start a fresh process per measurement served by one process per library.
The benchmarks run as three background jobs (``run_all.py --smoke --only ...``) of about the
same length, so that they share the cores with the other launches instead of making one
long serial job.
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
RATIO = r" +\|.*\| (accel/raw|accelerate/accel|accel/accelerate|accel/deepspeed) = [0-9.]+x?"
# benchmark -> the lines it must print: (text, the pattern that follows it)
EXPECTED_LINES: dict[str, list[tuple[str, str]]] = {
    "collectives": [
        (operation, RATIO)
        for operation in (
            "gather nested (100 tensors)",
            "pad_across_processes nested (100)",
            "reduce(sum) nested (100 tensors)",
            "broadcast nested (100 tensors)",
            "gather one scalar tensor",
            "gather one (8,) tensor",
            "gather one (64, 10) logits tensor",
            "reduce(mean) one scalar",
            "broadcast one (8,) tensor",
            "gather 4M float32",
            "reduce(sum) 4M float32 (raw: clone)",
            "reduce(sum) 4M float32 (raw: in-place)",
            "cpu: gather one scalar tensor",
            "cpu: gather one (8,) tensor",
            "cpu: gather one (64, 10) logits tensor",
            "cpu: reduce(mean) one scalar",
            "cpu: broadcast one (8,) tensor",
        )
    ],
    "import_time": [("import accel.ops + .gather", RATIO)],
    "meta_init": [
        ("TinyLM under init_empty_weights (CPU)", RATIO),
        ("TinyLM under init_empty_weights, torch._dynamo imported first (CPU)", RATIO),
        ("estimate-memory process (CPU)", RATIO),
    ],
    "training_loop": [
        (operation, RATIO)
        for operation in (
            "MLP 3xLinear(512)+ReLU, batch 64 vs raw",
            "MLP 3xLinear(512)+ReLU, batch 64 vs accelerate",
            "TransformerEncoderLayer(128), 16x32 vs raw",
            "TransformerEncoderLayer(128), 16x32 vs accelerate",
            "step overhead over raw (us/step)",
        )
    ],
    "deepspeed_zero2": [("ZeRO-2 MLP 3xLinear(512)+ReLU, batch 64, AdamW", RATIO)],
    "checkpoint_io": [
        (line, r" +[0-9.]+x")
        for line in (
            "save_state (returned), accelerate/accel",
            "save_state (on disk), accelerate/accel",
            "load_state (cold cache), accelerate/accel",
            "load_state (warm cache), accelerate/accel",
            "blocked / synchronous save (warm)",
            "save_model / dd throughput (page cache)",
        )
    ],
}
# background job -> the benchmarks it runs (about a third of the smoke run's CPU time each)
GROUPS: dict[str, tuple[str, ...]] = {
    "bench_smoke_ddp": ("training_loop", "collectives"),
    "bench_smoke_engines": ("deepspeed_zero2", "ndp_steps", "import_time", "meta_init"),
    "bench_smoke_io": ("launch_overhead", "big_model_load", "cli_startup", "checkpoint_io"),
}


def _run_all(*names: str) -> subprocess.CompletedProcess[str]:
    env = {**base_environment(), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(RUN_ALL), "--smoke", "--only", *names],
        capture_output=True,
        text=True,
        timeout=600,  # the DeepSpeed launch alone takes about a minute here
        env=env,
        cwd=ROOT,
    )


@background(seconds=110, timeout=600)
def bench_smoke_ddp(out: Path) -> subprocess.CompletedProcess[str]:
    """``run_all.py --smoke --only`` the DDP benchmarks, in the background (background.py)."""
    return _run_all(*GROUPS["bench_smoke_ddp"])


@background(seconds=115, timeout=600)
def bench_smoke_engines(out: Path) -> subprocess.CompletedProcess[str]:
    """``run_all.py --smoke --only`` DeepSpeed, N-D parallelism, import and meta-init time."""
    return _run_all(*GROUPS["bench_smoke_engines"])


@background(seconds=110, timeout=600)
def bench_smoke_io(out: Path) -> subprocess.CompletedProcess[str]:
    """``run_all.py --smoke --only`` launch, CLI, big-model and checkpoint benchmarks."""
    return _run_all(*GROUPS["bench_smoke_io"])


def test_the_groups_run_every_benchmark_once() -> None:
    """Every benchmark of ``run_all.py`` is in exactly one smoke job."""
    source = RUN_ALL.read_text()
    declared = re.search(r"BENCHMARKS = \(([^)]*)\)", source)
    assert declared is not None, "run_all.py no longer declares BENCHMARKS"
    benchmarks = re.findall(r'"(\w+)"', declared.group(1))
    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(benchmarks)
    assert set(EXPECTED_LINES) <= set(benchmarks)


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(GROUPS))
def test_run_all_smoke_prints_a_ratio_for_every_operation(
    job: str, request: pytest.FixtureRequest
) -> None:
    """``run_all.py --smoke --only ...`` exits 0 and prints every line its benchmarks owe."""
    result: subprocess.CompletedProcess[str] = request.getfixturevalue(job)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for benchmark in GROUPS[job]:
        for text, follows in EXPECTED_LINES.get(benchmark, []):
            assert re.search(re.escape(text) + follows, result.stdout), (
                f"{benchmark}: no line {text!r}:\n{output}"
            )
