"""Wall time of ``accel`` commands vs the same ``accelerate`` commands (median of N runs).

    OMP_NUM_THREADS=1 uv run python tools/bench/cli_startup.py [--quick | --smoke] [--runs N]

Times ``--help``, ``env --help`` and ``config default --config_file <new file>`` of both tools
(console scripts of the current environment), interleaved, and prints the medians and the ratio
accel/accelerate; the target is a ratio of at most 0.1 (missed targets print ``MISSED``).
A first, uncounted round warms the page cache; ``--smoke`` (the test suite's run: checks that
every command works, the times mean little) runs each command once, without that round.
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

BIN = Path(sys.executable).parent
TARGET = 0.1
CASES = [("--help",), ("env", "--help"), ("config", "default", "--config_file", "{tmp}")]


def time_once(command: list[str], env: dict[str, str]) -> float:
    """Seconds one run of ``command`` takes (its output discarded; it must succeed).

    Example:
        >>> time_once([sys.executable, "-c", "pass"], dict(os.environ)) > 0
        True
    """
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; returns 0 (missed targets do not fail).

    Example:
        >>> main(["--runs", "1"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs per command")
    parser.add_argument("--smoke", action="store_true", help="1 run per command, no warm-up")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else 2 if args.quick else args.runs
    first = 1 if args.smoke else 0  # round 0 warms the page cache and is not counted
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL_", "ACCELERATE_"))}
        env.update(HOME=home, XDG_CONFIG_HOME=f"{home}/xdg", HF_HOME=f"{home}/hf")
        env.setdefault("OMP_NUM_THREADS", "1")
        times: dict[tuple[str, int], list[float]] = {}
        for run in range(first, runs + 1):
            for index, case in enumerate(CASES):
                for tool in ("accel", "accelerate"):
                    tmp = f"{home}/{tool}-{run}-{index}.yaml"
                    command = [str(BIN / tool), *(part.format(tmp=tmp) for part in case)]
                    elapsed = time_once(command, env)
                    if run:
                        times.setdefault((tool, index), []).append(elapsed)
    print(f"\nCLI startup, median of {runs} runs (wall seconds)")
    print(f"{'command':<40} {'accel':>8} {'accelerate':>11} {'ratio':>7}  target <= {TARGET}x")
    for index, case in enumerate(CASES):
        ours = statistics.median(times[("accel", index)])
        theirs = statistics.median(times[("accelerate", index)])
        ratio = ours / theirs
        flag = "ok" if ratio <= TARGET else "MISSED"
        name = " ".join(case).replace("{tmp}", "<tmp>")
        print(f"{name:<40} {ours:>8.3f} {theirs:>11.3f} {ratio:>6.3f}x  {flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
