"""Run the same benchmarks on an earlier revision and on this checkout, in one run.

Each benchmark prints ratios against its references (raw torch, the real ``accelerate``):
"accel / accelerate 0.52x". The references do not change between revisions, so comparing
the ratio a benchmark prints before and after a refactor shows what the refactor did to
accel's own speed, with machine noise shared by both sides. The earlier revision is checked
out into a temporary git worktree with its own locked environment; each benchmark runs
there and here alternately (``--rounds`` times each) with that revision's own script.

Both sides start with the same bytecode state: before any timing, each environment's
site-packages and each tree's sources are compiled to ``.pyc`` (``compileall``). Otherwise
the new environment (made under ``PYTHONDONTWRITEBYTECODE=1``, as on this machine) compiles
every module from source on each import while this checkout's environment, whose tests wrote
bytecode, does not: that skewed reference-only lines by a factor of about 0.74.

    OMP_NUM_THREADS=1 uv run python tools/bench/compare_revisions.py 6c0a52c
    OMP_NUM_THREADS=1 uv run python tools/bench/compare_revisions.py 6c0a52c --quick \\
        --bench training_loop import_time

Prints one row per ratio line (its label, the ratios before and after, after/before).
Exits non-zero when a benchmark fails on either side.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What run_all.py runs, minus the DeepSpeed one (it compiles ops per environment) and the
# ones that load or write over a gigabyte (too slow to repeat; they run with --quick only).
DEFAULT_BENCHES = ("import_time", "training_loop", "launch_overhead", "cli_startup", "collectives")
RATIO = re.compile(r"(\d+(?:\.\d+)?)x\b")
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def ratio_lines(output: str) -> dict[str, list[float]]:
    """The ratios a benchmark printed, keyed by their line with every number taken out (the
    absolute timings on a ratio line differ from run to run; the words do not).

    Example:
        >>> ratio_lines("  accel / accelerate 0.52x  (target < 1.00x: yes)\\nother 3 s")
        {'accel / accelerate #x (target < #x: yes)': [0.52, 1.0]}
        >>> list(ratio_lines("import | accel ms 12.5 | accelerate/accel = 20.1x"))
        ['import | accel ms # | accelerate/accel = #x']
    """
    found: dict[str, list[float]] = {}
    for line in output.splitlines():
        values = [float(v) for v in RATIO.findall(line)]
        if values:
            key = NUMBER.sub("#", RATIO.sub("#x", line))
            found.setdefault(" ".join(key.split()), values)
    return found


def checkout(revision: str, into: Path) -> Path:
    """A detached worktree of ``revision`` with its locked environment synced.

    Example:
        >>> checkout("6c0a52c", Path("/tmp/before"))  # doctest: +SKIP
    """
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(into), revision], cwd=ROOT, check=True
    )
    subprocess.run(["uv", "sync", "--locked", "--quiet"], cwd=into, check=True)
    return into


def compile_bytecode(tree: Path) -> None:
    """Write ``.pyc`` files for ``tree``'s environment and sources (up-to-date ones are kept).

    ``compileall`` writes them whatever ``PYTHONDONTWRITEBYTECODE`` says; files that do not
    compile on this Python (test data in some packages) are skipped: nothing imports them.

    Example:
        >>> compile_bytecode(ROOT)  # doctest: +SKIP
    """
    python = tree / ".venv" / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folders = [site, str(tree / "packages"), str(tree / "tools")]
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", *folders],
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def run_bench(tree: Path, bench: str, extra: list[str]) -> str:
    """Run ``tools/bench/<bench>.py`` of ``tree`` in its environment; return its output.

    Example:
        >>> run_bench(ROOT, "import_time", ["--quick"])  # doctest: +SKIP
    """
    script = tree / "tools" / "bench" / f"{bench}.py"
    python = tree / ".venv" / "bin" / "python"
    if bench == "collectives":
        command = [str(python), "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        command += ["--master_port", str(_free_port()), str(script), *extra]
    else:
        command = [str(python), str(script), *extra]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{bench} failed in {tree} ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compare(before: dict[str, list[float]], after: dict[str, list[float]]) -> list[str]:
    """Table rows for the labels both sides printed, one per ratio on the line.

    Example:
        >>> compare({"a #x": [2.0]}, {"a #x": [1.0]})[0].split()
        ['a', '#x', '2.00x', '1.00x', '0.50']
    """
    rows = []
    for label, old_values in before.items():
        for column, (old, new) in enumerate(zip(old_values, after.get(label, []))):
            name = label if column == 0 else f"  (ratio {column + 1} of the line)"
            change = f"{new / old:.2f}" if old else "-"
            rows.append(f"{name[:64]:<64} {old:6.2f}x {new:6.2f}x  {change:>5}")
    return rows


def median_per_column(runs: list[list[float]]) -> list[float]:
    """The median of each position over several runs of one line.

    Example:
        >>> median_per_column([[1.0, 5.0], [3.0, 4.0], [2.0, 6.0]])
        [2.0, 5.0]
    """
    width = min(len(run) for run in runs)
    return [sorted(run[i] for run in runs)[len(runs) // 2] for i in range(width)]


def main(argv: list[str] | None = None) -> None:
    """Benchmark ``revision`` and this checkout side by side.

    Example:
        >>> main(["6c0a52c", "--quick", "--bench", "import_time"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the earlier git revision (commit, tag, branch)")
    parser.add_argument("--bench", nargs="+", default=list(DEFAULT_BENCHES))
    parser.add_argument("--quick", action="store_true", help="pass --quick to each benchmark")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per side")
    args = parser.parse_args(argv)
    extra = ["--quick"] if args.quick else []
    workdir = Path(tempfile.mkdtemp(prefix="accel-bench-before-"))
    before_tree = workdir / "tree"
    # a kill (SIGTERM) unwinds like Ctrl-C, so the worktree below is removed either way
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped; removing {before_tree}"))
    try:
        checkout(args.revision, before_tree)
        for tree in (before_tree, ROOT):
            compile_bytecode(tree)
        for bench in args.bench:
            if not (before_tree / "tools" / "bench" / f"{bench}.py").exists():
                print(f"\n{bench}: not in {args.revision}, skipped")
                continue
            runs: dict[str, dict[str, list[list[float]]]] = {"before": {}, "after": {}}
            for _ in range(args.rounds):
                for side, tree in (("before", before_tree), ("after", ROOT)):
                    for label, values in ratio_lines(run_bench(tree, bench, extra)).items():
                        runs[side].setdefault(label, []).append(values)
            before, after = (
                {label: median_per_column(lines) for label, lines in runs[side].items()}
                for side in ("before", "after")
            )
            print(f"\n{bench}: ratios it printed, {args.revision} -> this checkout")
            print(f"{'line':<64} {'before':>7} {'after':>7}  after/before")
            for row in compare(before, after):
                print(row, flush=True)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, check=False
        )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
