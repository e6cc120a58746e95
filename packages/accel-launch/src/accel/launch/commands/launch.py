"""``accel launch``: start a script on the processes and machines the settings ask for.

Settings resolve as flags > environment > config file > defaults
(:mod:`accel.launch.settings`); the processes of one machine start through the torch-free
spawner (:mod:`accel.launch.spawn`), multi-machine jobs and ``--rdzv_backend c10d`` through
torch's elastic agent (:mod:`accel.launch.elastic`), and a single process replaces the launcher.

Example:
    accel launch --cpu --num_processes 2 train.py --lr 0.1
    accel launch --config_file cfg.yaml -m my_pkg.train
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from accel.launch.commands.launch_checks import LaunchError, check_launch
from accel.launch.settings import (
    MODE_SWITCHES,
    OPTIONS,
    Resolved,
    SettingError,
    flatten_config,
    resolve,
)
from accel.state.env import PROGRESS_VAR
from accel.state.options import GROUPS, Option

NAME = "launch"
PREFIX = "accel launch:"


def _add(group: Any, name: str, **kwargs: Any) -> None:
    if kwargs.get("action") is None and len(kwargs.get("choices") or ()) > 6:
        kwargs.setdefault("metavar", "{" + ",".join(list(kwargs["choices"])[:4]) + ",...}")
    elif kwargs.get("action") is None and "choices" not in kwargs:
        kwargs.setdefault("metavar", "N" if kwargs.get("type") in (int, float) else "VALUE")
    group.add_argument(f"--{name}", dest=name, **kwargs)


_FLAG_KWARGS: dict[str, dict[str, Any]] = {
    "switch": {"action": "store_true"},
    "value": {},
    "int": {"type": int},
    "float": {"type": float},
    "choice": {},
    "choice_lower": {"type": str.lower},
}


def add_option_flag(group: Any, entry: Option) -> None:
    """Declare ``--<entry.name>`` in ``group`` as the option table says (``entry.flag``).

    Example:
        >>> import argparse
        >>> from accel.state.options import option
        >>> p = argparse.ArgumentParser()
        >>> add_option_flag(p, option("zero_stage"))
        >>> p.parse_args(["--zero_stage", "2"]).zero_stage
        2
    """
    if entry.flag is None:
        return
    kwargs: dict[str, Any] = {"default": None, **_FLAG_KWARGS[entry.flag]}
    if entry.flag in ("choice", "choice_lower"):
        kwargs["choices"] = entry.choices
    if entry.help is not None:
        kwargs["help"] = entry.help
    _add(group, entry.name, **kwargs)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``launch`` subcommand (Accelerate's flags; ``--a_b`` and ``--a-b`` both work).

    Example:
        >>> from accel.launch.parser import AccelArgumentParser
        >>> root = AccelArgumentParser(prog="accel")
        >>> p = register(root.add_subparsers())
        >>> root.parse_args(["launch", "--num-processes", "2", "t.py", "--x"]).training_script_args
        ['--x']
    """
    parser = subparsers.add_parser(
        NAME,
        help="start a script on one or many processes/machines",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--config_file", default=None, help="YAML config file to read")
    parser.add_argument("-q", "--quiet", action="store_true", help="print no launcher messages")

    for title in GROUPS:
        group = parser.add_argument_group(title)
        for entry in OPTIONS:
            if entry.group == title:
                add_option_flag(group, entry)
    # The config key's spelling of --cpu (Accelerate has no such flag; accepted, not listed).
    parser.add_argument("--use_cpu", dest="cpu", action="store_true", default=None,
                        help=argparse.SUPPRESS)  # fmt: skip

    what = parser.add_argument_group("what to run")
    what.add_argument("-m", "--module", action="store_true", help="run a module (python -m)")
    _add(what, "no_python", action="store_true", default=None,
         help="run an executable directly, not through python")  # fmt: skip
    parser.add_argument("training_script", help="script, module (-m) or executable (--no_python)")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=run)
    return parser


# ----------------------------------------------------------------------------------- resolution


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"{PREFIX} {text}", file=sys.stderr, flush=True)


def _load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[dict, str | None]:
    """The flattened config file (``{}`` without one) and a line saying which file it was."""
    from accel.launch.config_file import ConfigError, load_config, resolve_config_path

    path, source = resolve_config_path(args.config_file, environ)
    if path is None:
        return {}, None
    try:
        config = load_config(path, source)
    except ConfigError as error:
        raise LaunchError(str(error)) from None
    if config.compute_environment != "LOCAL_MACHINE":
        raise LaunchError(
            f"{path}: compute_environment={config.compute_environment} is not supported by accel "
            "launch (LOCAL_MACHINE only)"
        )
    from accel.launch.sections import refuse_unimplemented

    try:
        refuse_unimplemented(config.explicit, str(path))
    except ValueError as error:
        raise LaunchError(str(error)) from None
    flags_set_mode = any(getattr(args, name) for name in MODE_SWITCHES)
    flat = flatten_config(config.launch_defaults(), mode_from_flags=flags_set_mode)
    return flat, f"config file {path} ({source})"


def resolve_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Resolved:
    """All settings of this launch (flags > environment incl. SLURM > config > defaults),
    checked for conflicts; prints where values came from unless ``--quiet``.

    Example:
        >>> ns = argparse.Namespace(**{o.name: None for o in OPTIONS}, config_file=None,
        ...     quiet=True, module=False, no_python=True, training_script="true",
        ...     training_script_args=[])
        >>> resolve_args(ns, {"ACCEL_MIXED_PRECISION": "bf16"}).values["mixed_precision"]
        'bf16'
    """
    from accel.launch.slurm import slurm_settings

    config, config_line = _load_config(args, environ)
    try:
        slurm = slurm_settings(environ)
    except ValueError as error:
        raise LaunchError(str(error)) from None
    flags = {option.name: getattr(args, option.name, None) for option in OPTIONS}
    try:
        resolved = resolve(flags, environ, config, slurm)
    except SettingError as error:
        raise LaunchError(str(error)) from None
    if config_line is not None:
        taken = resolved.from_source("config")
        listed = ", ".join(f"{k}={v}" for k, v in taken.items()) or "nothing (all overridden)"
        _say(args, f"using {config_line}; from it: {listed}")
    from_env = {
        name: resolved.sources[name].split(" ", 1)[1]
        for name in resolved.from_source("env")
        if name != "num_cpu_threads_per_process"
    }
    if from_env:
        _say(args, "from the environment: " + ", ".join(
            f"{k}={resolved.values[k]} ({v})" for k, v in from_env.items()))  # fmt: skip
    from accel.launch.sections import fp8_env

    try:
        resolved.values["fp8_env"] = fp8_env(config)
    except ValueError as error:
        raise LaunchError(f"{config_line}: {error}") from None
    check_launch(args, resolved)
    return resolved


def xla_command(args: argparse.Namespace, num_processes: int | None) -> list[str]:
    """The argv of ``accel launch --tpu``: accel-xla's runner starts the processes.

    ``num_processes=None`` means one process per XLA device.

    Example:
        >>> ns = argparse.Namespace(module=False, training_script="t.py", training_script_args=[])
        >>> xla_command(ns, 1)[1:]
        ['-u', '-m', 'accel.xla.launch', '--num_processes', '1', 't.py']
    """
    count = "all" if num_processes is None else str(num_processes)
    runner = [sys.executable, "-u", "-m", "accel.xla.launch", "--num_processes", count]
    if args.module:
        runner.append("--module")
    return [*runner, args.training_script, *args.training_script_args]


# ------------------------------------------------------------------------------------- running


def worker_command(args: argparse.Namespace) -> list[str]:
    """The argv each process runs (``python -u script ...``, ``python -u -m mod ...`` or the
    executable itself with ``--no_python``).

    Example:
        >>> ns = argparse.Namespace(module=True, no_python=False, training_script="pkg.train",
        ...                         training_script_args=["--lr", "1"])
        >>> worker_command(ns)[1:]
        ['-u', '-m', 'pkg.train', '--lr', '1']
    """
    script_args = list(args.training_script_args)
    if args.no_python:
        return [args.training_script, *script_args]
    if args.module:
        return [sys.executable, "-u", "-m", args.training_script, *script_args]
    return [sys.executable, "-u", args.training_script, *script_args]


def _port(args: argparse.Namespace, v: Mapping[str, Any], local: bool) -> int | None:
    """The rendezvous port: a free one for 0 (or unset on one machine); error if busy."""
    from accel.launch.spawn import free_port, port_in_use

    port = v["main_process_port"]
    if port == 0 or (port is None and local):
        return None if local else free_port()
    port = 29500 if port is None else port
    if v["machine_rank"] == 0 and port_in_use(port):
        raise LaunchError(
            f"main_process_port {port} is already in use on this machine; pick another "
            "(--main_process_port) or 0 for any free port"
        )
    return port


def launch(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Resolve the settings of ``args`` and run the job; its exit status.

    Example:
        >>> launch(register(AccelArgumentParser().add_subparsers()).parse_args(["t.py"]))  # doctest: +SKIP
    """
    environ = dict(os.environ if environ is None else environ)
    resolved = resolve_args(args, environ)
    v = resolved.values
    from accel.launch.protocol import protocol_env

    env = {**environ, **protocol_env(v)}
    command = worker_command(args)
    machines, nproc = v["num_machines"], v["num_processes"] // v["num_machines"]
    if machines > 1 or v["rdzv_backend"] == "c10d":
        from accel.launch.elastic import TorchrunPlan, run_elastic

        port = _port(args, v, local=False)
        plan = TorchrunPlan(
            script=[args.training_script, *args.training_script_args],
            nproc=nproc,
            nnodes=machines,
            node_rank=v["machine_rank"],
            master_addr=v["main_process_ip"] or "127.0.0.1",
            master_port=port or 29500,
            rdzv_backend=v["rdzv_backend"],
            same_network=v["same_network"],
            max_restarts=v["max_restarts"],
            monitor_interval=v["monitor_interval"],
            log_dir=v["log_dir"],
            tee=v["tee"],
            rank_prefix=v["rank_prefix"],
            module=args.module,
            no_python=args.no_python,
        )
        _say(args, f"machine {v['machine_rank']} of {machines}: {nproc} processes "
             f"(torch elastic agent, {plan.master_addr}:{plan.master_port})")  # fmt: skip
        return run_elastic(plan, env)

    from accel.launch.spawn import WorkerGroup, exec_single, run_workers
    from accel.launch.worker_output import OutputPlan

    if v["tpu"]:
        explicit = resolved.sources["num_processes"] != "default"
        exec_single(xla_command(args, v["num_processes"] if explicit else None), env)
    output = OutputPlan(log_dir=v["log_dir"], tee=v["tee"], rank_prefix=v["rank_prefix"])
    if _console_is_tty(output) and PROGRESS_VAR not in env:
        env[PROGRESS_VAR] = "1"  # the workers' stderr is a pipe; the user's is a terminal
    if nproc == 1 and v["max_restarts"] == 0 and output == OutputPlan():
        exec_single(command, env)
    group = WorkerGroup(
        command=command,
        env=env,
        nproc=nproc,
        master_addr=v["main_process_ip"] or "127.0.0.1",
        master_port=_port(args, v, local=True),
        max_restarts=v["max_restarts"],
        monitor_interval=v["monitor_interval"],
        distributed=nproc > 1,
        output=output,
    )
    return run_workers(group)


def _console_is_tty(output: Any) -> bool:
    """Whether the workers' stderr ends on the user's terminal (progress bars are wanted)."""
    try:
        return sys.stderr.isatty() and output.to_console("stderr")
    except (AttributeError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    """Entry point of ``accel launch``: bad input is one line on stderr and exit status 2.

    Example:
        >>> run(argparse.Namespace(training_script="missing.py"))  # doctest: +SKIP
        2
    """
    try:
        return launch(args)
    except LaunchError as error:
        print(f"{PREFIX} error: {error}", file=sys.stderr)
        return 2


def launch_command_parser(subparsers: Any = None) -> argparse.ArgumentParser:
    """The ``launch`` argument parser, for programs that build their own launcher front end
    (Accelerate's name). With ``subparsers`` it is added there; without, it stands alone.

    Example:
        >>> args = launch_command_parser().parse_args(["--num_processes", "2", "train.py", "--lr", "1"])
        >>> args.num_processes, args.training_script, args.training_script_args
        (2, 'train.py', ['--lr', '1'])
    """
    if subparsers is None:
        from accel.launch.parser import AccelArgumentParser

        subparsers = AccelArgumentParser(prog="accel").add_subparsers()
    return register(subparsers)


def launch_command(args: argparse.Namespace) -> int:
    """Run ``accel launch`` with ``args`` from :func:`launch_command_parser`; returns the exit
    status (bad input: one line on stderr and 2).

    Example:
        >>> launch_command(launch_command_parser().parse_args(["train.py"]))  # doctest: +SKIP
        0
    """
    return run(args)
