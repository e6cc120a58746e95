"""The ``accel`` command: ``accel <command> [<args>]``.

Built-in commands live in ``accel.launch.commands.<name>``; each module has
``register(subparsers) -> parser`` that adds its subparser and sets ``func`` (called with the
parsed namespace; returns an exit status or None). A module is imported only when its command
runs or shows its help, so ``accel --help`` and ``accel config`` stay torch-free and fast.

Other wheels add commands through the entry-point group ``accel.commands`` (name = command,
value = a module with ``register(subparsers)``). Entry points are read only for ``accel --help``
and for a command that is not built in.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    accel ...
    0
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

from accel.launch.parser import AccelArgumentParser

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint  # at run time only where entry points are read

PROG = "accel"
GROUP = "accel.commands"

# name -> (module, one-line help). Help is here so that ``accel --help`` imports nothing.
BUILTIN: dict[str, tuple[str, str]] = {
    "launch": ("accel.launch.commands.launch", "start a script on one or many processes/machines"),
    "config": (
        "accel.launch.commands.config",
        "write the config file (questions, default, update)",
    ),
    "env": ("accel.launch.commands.env", "print versions, devices and config for a bug report"),
}

# Commands other wheels provide: name -> (distribution, one-line help).
KNOWN_EXTERNAL: dict[str, tuple[str, str]] = {
    "estimate-memory": ("accel-big-model", "estimate the memory a model needs"),
    "test": ("accel-core", "run a short end-to-end check of this setup"),
}


def _entry_points() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _installed(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _version() -> str:
    return _installed("accel-launch") or "unknown"


def format_help() -> str:
    """The text of ``accel --help``: built-in commands, then the installed and known extra ones.

    Example:
        >>> "launch" in format_help()
        True
    """
    plugins = _entry_points()
    rows = [(name, text) for name, (_, text) in BUILTIN.items()]
    for name, ep in sorted(plugins.items()):
        if name not in BUILTIN:
            dist = getattr(getattr(ep, "dist", None), "name", None)
            text = KNOWN_EXTERNAL.get(name, ("", f"from {dist or ep.value}"))[1]
            rows.append((name, text))
    for name, (dist, text) in KNOWN_EXTERNAL.items():
        if name not in plugins:
            rows.append((name, f"{text} (needs: pip install {dist})"))
    width = max(len(name) for name, _ in rows) + 2
    lines = [
        f"usage: {PROG} <command> [<args>]",
        "",
        "Run one PyTorch script on a CPU, GPUs, machines or TPUs (Accelerate-compatible).",
        "",
        "commands:",
        *(f"  {name.ljust(width)}{text}" for name, text in rows),
        "",
        "options:",
        "  -h, --help  show this message",
        "  --version   print the version",
        "",
        f"Run `{PROG} <command> --help` for the flags of a command.",
    ]
    return "\n".join(lines)


def _load(command: str) -> ModuleType | int:
    """The module registering ``command``, or an exit status after printing why there is none."""
    if command in BUILTIN:
        return import_module(BUILTIN[command][0])
    ep = _entry_points().get(command)
    if ep is not None:
        return ep.load()
    if command in KNOWN_EXTERNAL:
        dist = KNOWN_EXTERNAL[command][0]
        installed = _installed(dist)
        if installed:
            why = f"{dist} {installed} is installed but does not register it; upgrade: pip install -U {dist}"
        else:
            why = f"it comes with the {dist} wheel, which is not installed: pip install {dist}"
        print(f"{PROG}: '{command}' is not available; {why}", file=sys.stderr)
        return 2
    names = sorted({*BUILTIN, *KNOWN_EXTERNAL, *_entry_points()})
    match = difflib.get_close_matches(command, names, n=1, cutoff=0.5)
    hint = f"; did you mean '{match[0]}'?" if match else f"; commands: {', '.join(names)}"
    print(f"{PROG}: unknown command '{command}'{hint}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``accel`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Example:
        >>> main(["lauch"])
        2
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(format_help())
        return 0 if args else 1
    if args[0] == "--version":
        print(f"{PROG} {_version()}")
        return 0
    if args[0].startswith("-"):
        print(
            f"{PROG}: error: expected a command before {args[0]!r} (see {PROG} --help)",
            file=sys.stderr,
        )
        return 2
    command = args[0]
    module = _load(command)
    if isinstance(module, int):
        return module
    parser = AccelArgumentParser(prog=PROG, add_help=False)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    module.register(subparsers)  # type: ignore[attr-defined]
    try:
        namespace = parser.parse_args(args)
        func = getattr(namespace, "func", None)
        if func is None:
            print(f"{PROG}: error: '{command}' registered no function to run", file=sys.stderr)
            return 2
        status = func(namespace)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return 1
        return code if isinstance(code, int) else (0 if code is None else 1)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
