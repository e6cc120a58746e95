"""``accel test``: launch a short multi-process self-check with your configuration.

It starts ``accel launch`` (with ``--config_file`` if given) on a built-in script that checks
the process group, the collectives and a short training loop, and says plainly whether this
setup works. ``--help`` does not import torch.

Example:
    >>> from accel.launch.parser import AccelArgumentParser
    >>> parser = register(AccelArgumentParser(prog="accel").add_subparsers())
    >>> parser.parse_args(["--num_processes", "2"]).num_processes
    2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

SELF_CHECK = Path(__file__).with_name("self_check.py")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``test`` to ``subparsers``.

    Example:
        >>> from accel.launch.parser import AccelArgumentParser
        >>> register(AccelArgumentParser(prog="accel").add_subparsers()).prog
        'accel test'
    """
    parser = subparsers.add_parser(
        "test",
        help="run a short end-to-end check of this setup",
        description=(
            "Launch a built-in script with your configuration: it checks that the processes "
            "form one group, that collectives return the right values, and that a short "
            "training loop keeps every process's weights identical."
        ),
    )
    parser.add_argument("--config_file", default=None, help="the config file to test")
    parser.add_argument(
        "--num_processes", type=int, default=None, help="override the number of processes"
    )
    parser.add_argument("--cpu", action="store_true", help="run on CPU processes (gloo)")
    parser.set_defaults(func=run)
    return parser


def launch_command(args: argparse.Namespace) -> list[str]:
    """The ``accel launch`` command line that runs the self-check.

    Example:
        >>> ns = argparse.Namespace(config_file=None, num_processes=2, cpu=True)
        >>> launch_command(ns)[3:]  # doctest: +ELLIPSIS
        ['launch', '--cpu', '--num_processes', '2', '...self_check.py']
    """
    command = [sys.executable, "-m", "accel.launch.cli", "launch"]
    if args.config_file:
        command += ["--config_file", args.config_file]
    if args.cpu:
        command.append("--cpu")
    if args.num_processes is not None:
        command += ["--num_processes", str(args.num_processes)]
    return [*command, str(SELF_CHECK)]


def run(args: argparse.Namespace) -> int:
    """Run the self-check; 0 when the setup works, 1 otherwise."""
    print("accel test: running " + " ".join(launch_command(args)[2:]), flush=True)
    status = subprocess.call(launch_command(args))
    if status == 0:
        print("accel test: success, this setup works.")
        return 0
    print(f"accel test: FAILED (exit status {status}); the lines above say which check failed.")
    return 1
