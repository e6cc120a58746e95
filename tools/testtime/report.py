"""Sum the CPU seconds a run's interpreters recorded (see ``sitecustomize.py`` here).

Groups every interpreter under the job that started it: the pytest test named in its
environment, else its ancestor that the pytest process started (a background launch), and
prints the groups by CPU seconds, most first.

    uv run python tools/testtime/report.py /tmp/accel-cpu.tsv --top 40
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Interpreter:
    """One line of the log: a Python interpreter that exited normally.

    Example:
        >>> Interpreter.parse("7\\t1\\t1.50\\t3.00\\tTrue\\t\\tpython w.py").cpu
        1.5
    """

    pid: str
    parent: str
    cpu: float
    wall: float
    torch: bool
    test: str
    argv: str

    @classmethod
    def parse(cls, line: str) -> Interpreter:
        pid, parent, cpu, wall, torch, test, argv = line.rstrip("\n").split("\t", 6)
        return cls(pid, parent, float(cpu), float(wall), torch == "True", test, argv)


def _label(argv: str) -> str:
    """A command line without temporary paths, ports and the environment's prefix."""
    argv = argv.replace(f"{ROOT}/", "")
    argv = re.sub(r"/tmp/\S+|--master_\w+ \S+|\S*/site-packages/|\S*/\.venv/bin/", "", argv)
    return re.sub(r"\s+", " ", argv).strip()[:120]


def group_costs(interpreters: list[Interpreter]) -> dict[str, tuple[float, int]]:
    """CPU seconds and interpreter count per job: the test that started an interpreter, or
    the command of its oldest recorded ancestor below the root process.

    Example:
        >>> lines = ["1\\t0\\t9.0\\t9\\tFalse\\t\\tpytest", "2\\t1\\t2.0\\t2\\tTrue\\t\\tw.py a",
        ...          "3\\t2\\t3.0\\t3\\tTrue\\t\\tw.py b", "4\\t1\\t1.0\\t1\\tTrue\\tt.py::x\\t-c"]
        >>> group_costs([Interpreter.parse(line) for line in lines])["w.py a"]
        (5.0, 2)
    """
    by_pid = {item.pid: item for item in interpreters}
    roots = {item.pid for item in interpreters if item.parent not in by_pid}
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for item in interpreters:
        if item.test:
            key = item.test.split("[")[0]
        elif item.pid in roots:
            key = f"(root) {_label(item.argv)}"
        else:
            top = item
            while by_pid[top.parent].pid not in roots:
                top = by_pid[top.parent]
            key = _label(top.argv)
        groups[key][0] += item.cpu
        groups[key][1] += 1
    return {key: (round(cpu, 2), int(count)) for key, (cpu, count) in groups.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, nargs="?", default=Path("/tmp/accel-cpu.tsv"))
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    interpreters = [Interpreter.parse(line) for line in args.log.read_text().splitlines() if line]
    costs = group_costs(interpreters)
    total = sum(item.cpu for item in interpreters)
    print(f"{len(interpreters)} interpreters, {total:.0f} CPU-s recorded")
    for key, (cpu, count) in sorted(costs.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{cpu:8.1f} s {count:4d}  {key}")


if __name__ == "__main__":
    main()
