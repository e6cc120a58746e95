"""Import cost of ``accel.ops`` vs ``accelerate``, on top of an already imported torch.

Each measurement runs in a fresh interpreter: it imports torch first (untimed), then times
the import of the library plus the first use of its ``gather`` (which, for accel, loads the
collectives module lazily). The libraries are measured alternately, several times each, and
the median is reported::

    OMP_NUM_THREADS=1 uv run python tools/bench/import_time.py [--quick | --smoke] [--repeat N]

``--smoke`` (the test suite's run) measures each library once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

TARGET_MS = 30.0

# Each snippet prints the seconds spent importing the library after torch was imported.
SNIPPETS = {
    "accel.ops": "import accel.ops as lib; lib.gather",
    "accelerate": "import accelerate as lib; lib.utils.gather",
}
TEMPLATE = (
    "import time, torch\n"
    "start = time.perf_counter()\n"
    "{snippet}\n"
    "print(time.perf_counter() - start)\n"
)


def measure_once(snippet: str) -> float:
    """Milliseconds ``snippet`` takes in a fresh interpreter that has already imported torch.

    Example:
        >>> measure_once("import json") < 1000  # doctest: +SKIP
        True
    """
    result = subprocess.run(
        [sys.executable, "-c", TEMPLATE.format(snippet=snippet)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    return float(result.stdout.strip().splitlines()[-1]) * 1e3


def measure(repeat: int) -> dict[str, list[float]]:
    """All samples (ms) for every library, taken alternately ``repeat`` times each.

    Example:
        >>> sorted(measure(1))  # doctest: +SKIP
        ['accel.ops', 'accelerate']
    """
    samples: dict[str, list[float]] = {name: [] for name in SNIPPETS}
    for _ in range(repeat):
        for name, snippet in SNIPPETS.items():
            samples[name].append(measure_once(snippet))
    return samples


def report(samples: dict[str, list[float]]) -> str:
    """The result table: median, min and max per library, and the ratio.

    Example:
        >>> print(report({"accel.ops": [10.0], "accelerate": [200.0]}))  # doctest: +NORMALIZE_WHITESPACE
        import cost above `import torch` (fresh interpreter each, 1 runs, median)
        library    | median ms | min ms | max ms
        accel.ops  |      10.0 |   10.0 |   10.0
        accelerate |     200.0 |  200.0 |  200.0
        import accel.ops + .gather | accel ms 10.0 | accelerate ms 200.0 | accelerate/accel = 20.0x | target accel <= 30 ms ok
    """
    runs = len(next(iter(samples.values())))
    lines = [
        f"import cost above `import torch` (fresh interpreter each, {runs} runs, median)",
        f"{'library':<10} | median ms | min ms | max ms",
    ]
    medians = {}
    for name, values in samples.items():
        medians[name] = statistics.median(values)
        lines.append(
            f"{name:<10} | {medians[name]:>9.1f} | {min(values):>6.1f} | {max(values):>6.1f}"
        )
    ours, theirs = medians["accel.ops"], medians["accelerate"]
    verdict = "ok" if ours <= TARGET_MS else "MISSED"
    lines.append(
        f"import accel.ops + .gather | accel ms {ours:.1f} | accelerate ms {theirs:.1f} | "
        f"accelerate/accel = {theirs / ours:.1f}x | target accel <= {TARGET_MS:.0f} ms {verdict}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure and print the import-cost table.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs per library")
    parser.add_argument("--smoke", action="store_true", help="1 run per library")
    parser.add_argument("--repeat", type=int, default=None, help="runs per library (default 5)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.smoke else 2 if args.quick else 5)
    print(f"\nOMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset (1 in children)')}")
    print(report(measure(repeat)), flush=True)


if __name__ == "__main__":
    main()
