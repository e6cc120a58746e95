"""The checks ``accel launch`` runs on its resolved settings before starting anything.

Conflicting switches, impossible process counts, a missing script or executable, ``--tpu``
without torch-xla: each is a :class:`LaunchError` naming the values and where they came from.

Example:
    >>> str(LaunchError("script train.py does not exist"))
    'script train.py does not exist'
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from accel.launch.settings import Resolved
from accel.state.options import PARALLELISM_SIZES
from accel.state.parallelism_sizes import check_parallelism_sizes


class LaunchError(ValueError):
    """Bad input to ``accel launch``: printed as one line, exit status 2.

    Example:
        >>> str(LaunchError("script train.py does not exist"))
        'script train.py does not exist'
    """


def _default_num_processes(values: Mapping[str, Any], environ: Mapping[str, str]) -> int:
    if values["cpu"]:
        return 1 * values["num_machines"]
    if values["gpu_ids"] != "all":
        per_node = len(values["gpu_ids"].split(","))
    else:
        from accel.launch.gpu_probe import count_gpus

        per_node = count_gpus(environ)
    return max(per_node, 1) * values["num_machines"]


def check_launch(args: argparse.Namespace, resolved: Resolved) -> None:
    """Raise :class:`LaunchError` for conflicting or impossible settings; fills in the default
    ``num_processes``.

    Example:
        >>> from accel.launch.settings import resolve
        >>> ns = argparse.Namespace(module=False, no_python=True, training_script="true")
        >>> resolved = resolve({"cpu": True, "tpu": True}, {}, {})
        >>> check_launch(ns, resolved)
        Traceback (most recent call last):
        ...
        accel.launch.commands.launch_checks.LaunchError: --cpu (from flag --cpu) and --tpu (from flag --tpu) cannot be used together; pick one
    """
    v, src = resolved.values, resolved.sources
    if args.module and args.no_python:
        raise LaunchError("--module and --no_python cannot be used together")
    if v["cpu"] and v["gpu_ids"] != "all":
        raise LaunchError(
            f"--cpu (from {src['cpu']}) conflicts with --gpu_ids={v['gpu_ids']} "
            f"(from {src['gpu_ids']}); drop one of them"
        )
    # --cpu with --multi_gpu means "several gloo processes on the CPU" (how Accelerate users
    # start CPU jobs: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu ...); only --tpu
    # really conflicts with --cpu.
    exclusive = [n for n in ("multi_gpu", "tpu", "use_fsdp", "use_deepspeed") if v[n]]
    if v["cpu"] and v["tpu"]:
        exclusive.insert(0, "cpu")
    if len(exclusive) > 1:
        names = " and ".join(f"--{n} (from {src[n]})" for n in exclusive)
        raise LaunchError(f"{names} cannot be used together; pick one")
    if v["tee"] and v["log_dir"] is None:  # worker output
        raise LaunchError(
            f"tee={v['tee']} (from {src['tee']}) picks which streams also reach the console "
            "besides the log files, so it needs --log_dir DIR (without it everything is "
            "printed already)"
        )
    if v["use_fsdp"] and v["fsdp_version"] != 2:
        raise LaunchError(
            f"fsdp_version={v['fsdp_version']} (from {src['fsdp_version']}): accel implements "
            "FSDP2 only; use --fsdp_version 2"
        )
    if v["num_processes"] is None:
        v["num_processes"] = _default_num_processes(v, os.environ)
        src["num_processes"] = "default"
    _check_parallelism_sizes(resolved)
    if v["multi_gpu"] and v["num_processes"] < 2:
        raise LaunchError(
            f"--multi_gpu needs at least 2 processes, got num_processes={v['num_processes']}"
        )
    machines = v["num_machines"]
    if v["num_processes"] % machines:
        raise LaunchError(
            f"num_processes={v['num_processes']} (from {src['num_processes']}) is not a multiple "
            f"of num_machines={machines}; it counts processes over all machines"
        )
    if not 0 <= v["machine_rank"] < machines:
        raise LaunchError(
            f"machine_rank={v['machine_rank']} (from {src['machine_rank']}) must be in "
            f"0..{machines - 1} for num_machines={machines}"
        )
    if machines > 1 and not v["main_process_ip"]:
        raise LaunchError(f"num_machines={machines} needs --main_process_ip (address of machine 0)")
    if v["tpu"]:
        _check_xla(args, src["tpu"])
    _check_target(args)


def _check_parallelism_sizes(resolved: Resolved) -> None:
    """Sizes given for ``ParallelismConfig`` must multiply to the number of processes."""
    v, src = resolved.values, resolved.sources
    given = {n: v["parallelism_config_" + n] for n in PARALLELISM_SIZES}
    given = {n: size for n, size in given.items() if size is not None}
    if not given:
        return
    try:
        check_parallelism_sizes(
            given,
            v["num_processes"],
            f"num_processes from {src['num_processes']}",
            {n: src["parallelism_config_" + n] for n in given},
        )
    except ValueError as error:
        raise LaunchError(str(error)) from None


def _check_xla(args: argparse.Namespace, source: str) -> None:
    """``--tpu`` runs a Python target through accel-xla's runner, in this Python."""
    import importlib.util

    if args.no_python:
        raise LaunchError(
            f"--tpu (from {source}) runs a Python script through XLA's multiprocessing; "
            "--no_python cannot be used with it"
        )
    missing = [
        name for name in ("torch_xla", "accel.xla") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise LaunchError(
            f"--tpu (from {source}) needs torch-xla and accel-xla, but {' and '.join(missing)} "
            f"cannot be imported by {sys.executable}; install them with pip install "
            "'accel-core[xla]' (torch-xla X.Y needs torch X.Y)"
        )


def _check_target(args: argparse.Namespace) -> None:
    target = args.training_script
    if args.module:
        return
    if args.no_python:
        if shutil.which(target) is not None:
            return
        if os.path.isdir(target):
            raise LaunchError(f"--no_python: {target!r} is a directory, not an executable")
        if os.path.isfile(target) and os.access(target, os.X_OK):
            raise LaunchError(
                f"--no_python: {target!r} is in the current folder, which is not on PATH; pass "
                f"it as ./{target}"
            )
        if os.path.isfile(target):
            how = (
                f"run it through python (drop --no_python), or make it executable (chmod +x "
                f"{target}) with a #! line"
                if target.endswith(".py")
                else f"make it executable (chmod +x {target})"
            )
            raise LaunchError(
                f"--no_python: {target!r} exists but is not executable (no execute permission "
                f"for this user); {how}"
            )
        raise LaunchError(f"--no_python: executable {target!r} not found (not a path, not on PATH)")
    if not os.path.isfile(target):
        hint = " (a directory; did you mean -m?)" if os.path.isdir(target) else ""
        raise LaunchError(f"script {target!r} does not exist{hint}")
