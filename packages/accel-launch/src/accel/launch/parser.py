"""The argument parser of every ``accel`` subcommand (torch-free).

:class:`AccelArgumentParser` is ``argparse.ArgumentParser`` with three changes:

* ``--a_b`` and ``--a-b`` are the same flag (only the registered spelling shows in ``--help``);
  arguments left for a training script are passed on exactly as typed;
* prefixes of a flag are not accepted (``allow_abbrev=False``, as in Accelerate);
* an error is one line (``accel launch: error: ...``) and exit status 2, never a traceback.

Subparsers made with ``add_subparsers()`` are of the same class.

Example:
    >>> p = AccelArgumentParser(prog="demo")
    >>> _ = p.add_argument("--mixed_precision")
    >>> p.parse_args(["--mixed-precision", "bf16"]).mixed_precision
    'bf16'
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

LEAF_ATTR = "_accel_parser"


def _swap(flag: str) -> str:
    """``--a-b=x`` -> ``--a_b=x`` (or the other way when it has underscores)."""
    name, sep, value = flag.partition("=")
    body = name[2:]
    body = body.replace("_", "-") if "_" in body else body.replace("-", "_")
    return "--" + body + sep + value


def closest_flag(word: str, parser: argparse.ArgumentParser) -> str | None:
    """The long flag of ``parser`` closest to ``word`` (difflib), or None.

    Example:
        >>> p = AccelArgumentParser(prog="demo"); _ = p.add_argument("--num_processes")
        >>> closest_flag("--num_proceses", p)
        '--num_processes'
    """
    name = word.partition("=")[0]
    flags = [f for f in parser._option_string_actions if f.startswith("--")]
    normal = {f.replace("-", "_"): f for f in flags}
    match = difflib.get_close_matches(name.replace("-", "_"), list(normal), n=1, cutoff=0.6)
    return normal[match[0]] if match else None


class AccelArgumentParser(argparse.ArgumentParser):
    """See the module docstring.

    Example:
        >>> AccelArgumentParser(prog="accel").allow_abbrev
        False
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", AccelArgumentParser)
        return super().add_subparsers(**kwargs)

    def _parse_optional(self, arg_string: str) -> Any:
        if arg_string.startswith("--") and len(arg_string) > 2:
            name = arg_string.partition("=")[0]
            if name not in self._option_string_actions:
                other = _swap(arg_string)
                if other.partition("=")[0] in self._option_string_actions:
                    return super()._parse_optional(other)
        return super()._parse_optional(arg_string)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(
            args, argparse.Namespace() if namespace is None else namespace
        )
        if not hasattr(ns, LEAF_ATTR):  # the innermost parser returns first
            setattr(ns, LEAF_ATTR, self)
        return ns, extras

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = getattr(ns, LEAF_ATTR, self)
            leaf.error(unknown_message(extras, leaf))
        return ns

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def unknown_message(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """One line about the first unrecognised argument, with the closest valid flag.

    Example:
        >>> p = AccelArgumentParser(prog="demo"); _ = p.add_argument("--debug")
        >>> unknown_message(["--debgu"], p)
        "unknown flag '--debgu'; did you mean '--debug'? (see demo --help)"
    """
    flags = [e for e in extras if e.startswith("-")]
    if not flags:
        return f"unexpected argument {extras[0]!r} (see {parser.prog} --help)"
    best = closest_flag(flags[0], parser)
    hint = f"; did you mean {best!r}?" if best else ""
    return f"unknown flag {flags[0]!r}{hint} (see {parser.prog} --help)"
