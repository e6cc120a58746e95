"""Run pyright (basic mode, ``[tool.pyright]`` in pyproject.toml) and hold its error count.

Zero errors is the goal; until then the count may only go down. The allowed count lives in
``pyright_baseline.txt`` beside this file: a run with more errors fails and lists them; a
run with fewer says so, and ``--update`` writes the new, lower count.

Example:
    uv run python tools/checks/pyright_baseline.py            # CI: fails above the baseline
    uv run python tools/checks/pyright_baseline.py --update   # after fixing errors
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("pyright_baseline.txt")


def run_pyright() -> dict:
    """Pyright's JSON report for the configured source tree."""
    done = subprocess.run(
        ["pyright", "--outputjson"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.exit(f"pyright produced no report (exit {done.returncode}):\n{done.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="lower the baseline to today's")
    args = parser.parse_args(argv)
    report = run_pyright()
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    allowed = int(BASELINE.read_text().split()[0])
    by_file = collections.Counter(
        Path(d["file"]).relative_to(ROOT).as_posix() for d in errors
    ).most_common()
    print(f"pyright: {len(errors)} errors (baseline {allowed})")
    if len(errors) > allowed:
        for d in errors:
            where = Path(d["file"]).relative_to(ROOT)
            line = d["range"]["start"]["line"] + 1
            print(f"{where}:{line}: {d.get('rule', '')}: {d['message'].splitlines()[0]}")
        print(f"{len(errors) - allowed} errors over the baseline of {allowed}: fix new ones")
        return 1
    if args.update and len(errors) < allowed:
        BASELINE.write_text(f"{len(errors)}\n")
        print(f"baseline lowered to {len(errors)}")
    elif len(errors) < allowed:
        print(f"{allowed - len(errors)} fewer than the baseline: run with --update to lower it")
    for path, count in by_file[:10]:
        print(f"  {count:4d} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
