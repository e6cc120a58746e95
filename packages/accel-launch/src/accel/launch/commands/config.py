"""``accel config``: write the config file by answering questions; ``default``; ``update``.

    accel config [--config_file PATH]                      questions (stdin may be a pipe)
    accel config default [--mixed_precision P] [--config_file PATH]
    accel config update [--config_file PATH]               rewrite an old or Accelerate file

Example:
    >>> from accel.launch.cli import main
    >>> main(["config", "default", "--help"])  # doctest: +ELLIPSIS
    usage: accel config default ...
    0
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from accel.state.options import MIXED_PRECISIONS

_LOCATION = (
    "default: $ACCEL_CONFIG_FILE, else $XDG_CONFIG_HOME/accel/default_config.yaml "
    "(~/.config/accel/default_config.yaml)"
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``config`` (with ``default`` and ``update``) to ``subparsers``.

    Example:
        >>> from accel.launch.parser import AccelArgumentParser
        >>> top = AccelArgumentParser(prog="accel")
        >>> register(top.add_subparsers()).prog
        'accel config'
    """
    parser = subparsers.add_parser(
        "config",
        help="write the config file",
        description="Write the config file by answering questions.",
    )
    parser.add_argument("--config_file", default=None, help=f"file to write ({_LOCATION})")
    parser.set_defaults(func=run_questions)
    inner = parser.add_subparsers(dest="config_command", metavar="{default,update}")
    default = inner.add_parser(
        "default",
        help="write a config for this machine without questions",
        description="Write a config for this machine (all GPUs found, else CPU) without questions.",
    )
    default.add_argument(
        "--config_file", dest="save_location", default=None, help=f"file to write ({_LOCATION})"
    )
    default.add_argument("--mixed_precision", choices=MIXED_PRECISIONS, default="no")
    default.set_defaults(func=run_default)
    update = inner.add_parser(
        "update",
        help="rewrite a config file (old or Accelerate's) in the current form",
        description="Load a config file (accel's or Accelerate's, any version) and rewrite it in the current form.",
    )
    update.add_argument(
        "--config_file", default=None, help="file to update (default: the one in effect)"
    )
    update.set_defaults(func=run_update)
    return parser


def _fail(message: str) -> int:
    """Report a usage error (bad input, a file that cannot be read or written): exit 2."""
    print(f"accel config: error: {message}", file=sys.stderr)
    return 2


def _os_error(exc: OSError, doing: str) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot {doing}{where}: {exc.strerror or exc}"


def run_questions(args: argparse.Namespace) -> int:
    """Ask the questions on stdout, read answers from stdin, write the file.

    Example:
        >>> run_questions(argparse.Namespace(config_file="/tmp/x.yaml"))  # doctest: +SKIP
        0
    """
    from accel.launch.config_file import ConfigError, default_config_path, write_config
    from accel.launch.config_questions import ask_config
    from accel.launch.gpu_probe import count_gpus
    from accel.launch.questions import Asker, BadAnswer, NoAnswer

    target = args.config_file or default_config_path()
    try:
        config = ask_config(Asker(sys.stdin, sys.stdout), num_gpus=count_gpus())
    except NoAnswer as exc:
        return _fail(f"input ended before an answer to: {exc}; nothing was written")
    except BadAnswer as exc:
        return _fail(f"invalid answer from non-interactive input: {exc}; nothing was written")
    try:
        path = write_config(config, target)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(_os_error(exc, "write the config file"))
    print(f"accel configuration saved at {path}")
    return 0


def run_default(args: argparse.Namespace) -> int:
    """``accel config default``: :func:`accel.launch.write_basic_config`.

    Example:
        >>> run_default(argparse.Namespace(mixed_precision="no", save_location="/tmp/d.yaml"))  # doctest: +SKIP
        0
    """
    from accel.launch.basic_config import write_basic_config
    from accel.launch.config_file import ConfigError

    try:
        path = write_basic_config(args.mixed_precision, args.save_location)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(_os_error(exc, "write the config file"))
    if path:
        print(f"accel configuration saved at {path}")
    return 0


def run_update(args: argparse.Namespace) -> int:
    """``accel config update``: load (old keys converted), validate, write back in place.

    Example:
        >>> run_update(argparse.Namespace(config_file="/nonexistent.yaml"))  # doctest: +SKIP
        2
    """
    from accel.launch.config_file import ConfigError, load_config, resolve_config_path, write_config

    path, source = resolve_config_path(args.config_file)
    if path is None:
        return _fail("no config file found; pass --config_file or run `accel config default`")
    try:
        config = load_config(path, source)
        write_config(config, path)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(_os_error(exc, "update the config file"))
    print(f"Updated the config file at {path} ({source}).")
    return 0
