"""The environment-variable protocol between ``accel launch`` and a training script.

The launcher hands every setting to the processes it starts as an environment variable named
``ACCEL_<NAME>``. Accelerate's spelling ``ACCELERATE_<NAME>`` is accepted on read, so jobs
written for Accelerate keep working. This module never imports torch: the launcher uses it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import overload

PREFIX = "ACCEL_"
ALIAS_PREFIX = "ACCELERATE_"

_TRUE = ("1", "true", "yes", "y", "on", "t")
_FALSE = ("0", "false", "no", "n", "off", "f", "")

# Names (without prefix) that the launcher may set. Keep in sync with the launcher docs.
MIXED_PRECISION = "MIXED_PRECISION"
DEBUG_MODE = "DEBUG_MODE"
USE_CPU = "USE_CPU"
TORCH_DEVICE = "TORCH_DEVICE"
BACKEND = "BACKEND"
USE_DEEPSPEED = "USE_DEEPSPEED"
USE_FSDP = "USE_FSDP"
USE_XLA = "USE_XLA"
DYNAMO_BACKEND = "DYNAMO_BACKEND"
GRADIENT_ACCUMULATION_STEPS = "GRADIENT_ACCUMULATION_STEPS"

PROTOCOL_NAMES = (
    MIXED_PRECISION,
    DEBUG_MODE,
    USE_CPU,
    TORCH_DEVICE,
    BACKEND,
    USE_DEEPSPEED,
    USE_FSDP,
    USE_XLA,
    DYNAMO_BACKEND,
    GRADIENT_ACCUMULATION_STEPS,
)

# Settings outside the launch option table (accel.state.options), named here so that the
# writer and the reader share one spelling.
CONFIG_FILE = "CONFIG_FILE"  # the config file (ACCEL_/ACCELERATE_CONFIG_FILE)
LOG_LEVEL = "LOG_LEVEL"  # get_logger's default level (ACCEL_/ACCELERATE_LOG_LEVEL)
# accel's own, no Accelerate spelling: whether accel's progress bars draw (the launcher sets
# it when the user's console is a terminal, as the workers' stderr is a pipe)
PROGRESS_VAR = PREFIX + "PROGRESS"
# Accelerate's plain variable: the processes were forked by notebook_launcher
FORK_LAUNCHED_VAR = "FORK_LAUNCHED"


def env_names(name: str) -> tuple[str, str]:
    """The two spellings under which setting ``name`` may appear, ours first.

    Example:
        >>> env_names("DEBUG_MODE")
        ('ACCEL_DEBUG_MODE', 'ACCELERATE_DEBUG_MODE')
    """
    return PREFIX + name, ALIAS_PREFIX + name


def read_env(
    name: str, default: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Value of setting ``name`` from ``ACCEL_<name>``, else ``ACCELERATE_<name>``, else ``default``.

    Example:
        >>> read_env("MIXED_PRECISION", "no", environ={"ACCELERATE_MIXED_PRECISION": "bf16"})
        'bf16'
    """
    environ = os.environ if environ is None else environ
    for key in env_names(name):
        if key in environ:
            return environ[key]
    return default


def _source(name: str, environ: Mapping[str, str]) -> str:
    for key in env_names(name):
        if key in environ:
            return key
    return PREFIX + name


def str_to_bool(value: str, source: str = "value") -> bool:
    """Parse a truth string (``1/true/yes/on`` or ``0/false/no/off``, any case).

    Example:
        >>> str_to_bool("Yes")
        True
    """
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(
        f"{source}={value!r} is not a truth value; use one of "
        f"{', '.join(_TRUE)} (true) or {', '.join(v for v in _FALSE if v)} (false)"
    )


def read_flag(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """Boolean setting ``name`` (see :func:`read_env`); a malformed value raises ``ValueError``.

    Example:
        >>> read_flag("DEBUG_MODE", environ={"ACCEL_DEBUG_MODE": "1"})
        True
    """
    environ = os.environ if environ is None else environ
    value = read_env(name, None, environ)
    if value is None:
        return default
    return str_to_bool(value, source=_source(name, environ))


def read_choice(
    name: str, choices: Iterable[str], default: str, environ: Mapping[str, str] | None = None
) -> str:
    """Setting ``name`` lower-cased and checked against ``choices``.

    Example:
        >>> read_choice("MIXED_PRECISION", ["no", "fp16", "bf16"], "no", environ={})
        'no'
    """
    environ = os.environ if environ is None else environ
    value = read_env(name, None, environ)
    if value is None:
        return default
    allowed = list(choices)
    if value.lower() not in allowed:
        raise ValueError(
            f"{_source(name, environ)}={value!r} is not valid; expected one of {', '.join(allowed)}"
        )
    return value.lower()


@overload
def read_int(
    keys: Iterable[str], default: int, environ: Mapping[str, str] | None = None
) -> int: ...
@overload
def read_int(
    keys: Iterable[str], default: None = None, environ: Mapping[str, str] | None = None
) -> int | None: ...
def read_int(
    keys: Iterable[str], default: int | None = None, environ: Mapping[str, str] | None = None
) -> int | None:
    """First of the plain variables ``keys`` that is set, as an int; ``default`` if none is.

    Example:
        >>> read_int(["WORLD_SIZE", "PMI_SIZE"], 1, environ={"PMI_SIZE": "4"})
        4
    """
    environ = os.environ if environ is None else environ
    for key in keys:
        raw = environ.get(key)
        if raw is None or raw.strip() == "":
            continue
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r} must be an integer") from None
    return default
