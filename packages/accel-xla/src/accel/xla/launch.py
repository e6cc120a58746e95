"""The process runner behind ``accel launch --tpu``: XLA's multiprocessing runs the script.

``accel launch`` (which must not import torch-xla) runs ``python -m accel.xla.launch``; this
module checks the setup, then starts the script through ``torch_xla.launch`` (``xmp.spawn``):
in this process for one process, or one process per XLA device otherwise. XLA's runtime
numbers the processes; ``PartialState`` reads rank and world size from it.

Example:
    python -m accel.xla.launch --num_processes 1 train.py --lr 0.1
    python -m accel.xla.launch --num_processes all -m my_pkg.train
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from accel.xla.runtime import pjrt_device
from accel.xla.versions import check_installed_pair

PREFIX = "accel launch --tpu:"


def _process_count(value: str) -> int | None:
    """``None`` for every device (``all``), else a positive process count."""
    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--num_processes={value!r} must be a positive integer or 'all'")
    return count


def run_target(index: int, target: str, arguments: list[str], module: bool) -> None:
    """Run ``target`` as ``__main__`` with ``arguments`` (what each XLA process does).

    ``index`` is the process's ordinal, passed by XLA's multiprocessing.

    Example:
        >>> run_target(0, "train.py", ["--lr", "0.1"], module=False)  # doctest: +SKIP
    """
    if module:
        sys.argv = [target, *arguments]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
        return
    sys.argv = [target, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    runpy.run_path(target, run_name="__main__")


def main(argv: list[str] | None = None) -> int:
    """Check the XLA setup and run the target through XLA's multiprocessing; exit status.

    Bad setup (``PJRT_DEVICE`` unset, torch and torch-xla that do not pair) is one line on
    stderr and exit status 2.

    Example:
        >>> main(["--num_processes", "1", "train.py"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(prog="python -m accel.xla.launch")
    parser.add_argument("--num_processes", default="all", help="a count, or 'all' devices")
    parser.add_argument("-m", "--module", action="store_true", help="target is a module")
    parser.add_argument("target")
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    try:
        count = _process_count(options.num_processes)
        device = pjrt_device("accel launch --tpu")
        check_installed_pair()
    except (ValueError, RuntimeError) as error:
        print(f"{PREFIX} error: {error}", file=sys.stderr)
        return 2
    if count is not None and count > 1:
        # XLA's multiprocessing takes "1" or "all devices"; the device count caps "all".
        kind = "GPU" if device in ("CUDA", "GPU") else device
        os.environ.setdefault(f"{kind}_NUM_DEVICES", str(count))
    import torch_xla  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

    torch_xla.launch(
        run_target,
        args=(options.target, list(options.arguments), options.module),
        debug_single_process=count == 1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
