"""One entry of the option table (:class:`Option`) and how its value travels: read from the
environment (:func:`lookup`) and written for the launcher's children (:func:`exported`).

The table itself, every setting of ``accel launch``, is :data:`accel.state.options.OPTIONS`.

Example:
    >>> from accel.state.option_parsers import BOOLEAN
    >>> entry = Option("debug", False, BOOLEAN, flag="switch", env=accel_env("DEBUG_MODE"),
    ...                export="on")
    >>> entry.read({"ACCELERATE_DEBUG_MODE": "1"}), exported(entry, {"debug": True})
    (('1', 'ACCELERATE_DEBUG_MODE'), 'true')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from accel.state.env import ALIAS_PREFIX, PREFIX
from accel.state.option_parsers import TEXT, Parser

Flag = Literal["switch", "value", "int", "float", "choice", "choice_lower"]
Export = Literal["always", "set", "on"]
_UNSET: Any = object()


def accel_env(name: str) -> tuple[str, str]:
    """``ACCEL_<name>`` and Accelerate's ``ACCELERATE_<name>``.

    Example:
        >>> accel_env("USE_CPU")
        ('ACCEL_USE_CPU', 'ACCELERATE_USE_CPU')
    """
    return (PREFIX + name, ALIAS_PREFIX + name)


def parallelism_env(name: str) -> tuple[str, str]:
    """``ACCEL_PARALLELISM_CONFIG_<name>`` and Accelerate's ``PARALLELISM_CONFIG_<name>``.

    Example:
        >>> parallelism_env("TP_SIZE")
        ('ACCEL_PARALLELISM_CONFIG_TP_SIZE', 'PARALLELISM_CONFIG_TP_SIZE')
    """
    return (PREFIX + "PARALLELISM_CONFIG_" + name, "PARALLELISM_CONFIG_" + name)


def fsdp_env(name: str) -> tuple[str, str]:
    """``ACCEL_FSDP_<name>`` and Accelerate's ``FSDP_<name>``.

    Example:
        >>> fsdp_env("VERSION")
        ('ACCEL_FSDP_VERSION', 'FSDP_VERSION')
    """
    return (PREFIX + "FSDP_" + name, "FSDP_" + name)


@dataclass(frozen=True)
class Option:
    """One setting of ``accel launch``, everything about it in one place.

    Fields:
        name: the setting's name, also the flag ``--name`` and the key in resolved settings.
        default: used when no flag, variable or config key sets it.
        parse: a :class:`~accel.state.option_parsers.Parser`; its ``choices`` are the allowed
            values everywhere (flag, environment, file, questions).
        help: the ``--help`` text.
        flag: how the flag is declared: ``None`` (no flag), ``"switch"`` (``--x``, no value),
            ``"value"`` (text, checked by ``parse``), ``"int"``/``"float"`` (argparse type),
            ``"choice"`` (argparse checks the choices), ``"choice_lower"`` (same, lower-cased).
        group: the ``--help`` section of the flag.
        env: variables read, in order; the first is the one the launcher writes for its children.
        config: key in the config file (flattened: ``fsdp_config.fsdp_version`` is
            ``fsdp_version``); ``None`` if the file has none.
        section: the YAML section holding ``config`` (``None``: top level).
        file_types / file_default: YAML types accepted (default: the parser's) and the default
            ``accel config`` writes (Accelerate's).
        export: when the launcher writes ``env[0]`` for the child: ``"always"``, ``"set"`` (not
            None) or ``"on"`` (true); ``None`` never.
        export_if: the switch that must be on for ``export`` (``"use_fsdp"``).
        export_default: written for ``"always"`` when the value is None (default: ``default``).
        export_upper: write the value upper-cased.
        question: the ``accel config`` question for this setting.

    Example:
        >>> from accel.state.option_parsers import BOOLEAN
        >>> o = Option("debug", False, BOOLEAN, flag="switch", env=accel_env("DEBUG_MODE"))
        >>> o.env[0], o.choices
        ('ACCEL_DEBUG_MODE', None)
    """

    name: str
    default: Any
    parse: Parser = TEXT
    help: str | None = None
    flag: Flag | None = None
    group: str | None = None
    env: tuple[str, ...] = ()
    config: str | None = None
    section: str | None = None
    file_types: tuple[type, ...] | None = None
    file_default: Any = None
    export: Export | None = None
    export_if: str | None = None
    export_default: Any = _UNSET
    export_upper: bool = False
    question: str | None = None

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed values (``None``: any value the parser takes).

        Example:
            >>> from accel.state.options import option
            >>> option("rdzv_backend").choices
            ('static', 'c10d', 'etcd', 'etcd-v2')
        """
        return self.parse.choices

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Keys of the flattened config file that may supply this setting: the file key, then
        the name (``distributed_type: MULTI_CPU`` flattens to ``cpu: true``).

        Example:
            >>> from accel.state.options import option
            >>> option("cpu").config_keys
            ('use_cpu', 'cpu')
        """
        keys = (self.config, self.name) if self.config else (self.name,)
        return tuple(dict.fromkeys(keys))

    def read(self, environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
        """This setting's raw value in the environment and the variable it came from.

        Example:
            >>> from accel.state.options import option
            >>> option("mixed_precision").read({"ACCELERATE_MIXED_PRECISION": "bf16"})
            ('bf16', 'ACCELERATE_MIXED_PRECISION')
        """
        return lookup(self.env, environ)


def lookup(
    keys: tuple[str, ...] | list[str], environ: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """The first of ``keys`` set in ``environ`` (default ``os.environ``): ``(value, key)``,
    or ``(None, None)`` when none is.

    Example:
        >>> lookup(("ACCEL_X", "ACCELERATE_X"), {"ACCELERATE_X": "1"})
        ('1', 'ACCELERATE_X')
    """
    environ = os.environ if environ is None else environ
    for key in keys:
        if key in environ:
            return environ[key], key
    return None, None


def exported(entry: Option, values: Mapping[str, Any]) -> str | None:
    """The text the launcher writes to ``entry.env[0]`` for resolved ``values``, or None.

    Example:
        >>> from accel.state.options import option
        >>> exported(option("dynamo_backend"), {"dynamo_backend": "inductor"})
        'INDUCTOR'
        >>> exported(option("fsdp_version"), {"fsdp_version": 2}) is None  # use_fsdp is off
        True
    """
    if entry.export is None or not entry.env:
        return None
    if entry.export_if is not None and not values.get(entry.export_if):
        return None
    value = values.get(entry.name)
    if entry.export == "on" and not value:
        return None
    if value is None:
        if entry.export != "always":
            return None
        value = entry.default if entry.export_default is _UNSET else entry.export_default
    if isinstance(value, bool) or value is None:
        text = "true" if value else "false"
    else:
        text = str(value)
    return text.upper() if entry.export_upper else text
