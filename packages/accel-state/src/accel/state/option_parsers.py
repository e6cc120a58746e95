"""Value parsers of the option table (:mod:`accel.state.options`), torch-free.

A parser turns a raw value (a flag's text, an environment variable, a YAML value) into the
setting, or raises :class:`SettingError` naming the value and where it came from. Each parser
also says which Python types a YAML file may hold for it (``yaml_types``), so the config
validation is generated from the same entry.

Example:
    >>> integer(1)("3", "--num_processes")
    3
    >>> try:
    ...     integer(1)("0", "--num_processes")
    ... except SettingError as error:
    ...     print(error)
    --num_processes='0' must be at least 1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accel.state.env import str_to_bool


class SettingError(ValueError):
    """A setting has a bad value; the message names the value, its source and what is valid.

    Example:
        >>> str(SettingError("--num_processes=0 must be at least 1"))
        '--num_processes=0 must be at least 1'
    """


@dataclass(frozen=True)
class Parser:
    """A named parse function plus the YAML types it accepts.

    ``parse(value, where)`` returns the parsed value; ``where`` is how the user wrote it
    (``--flag``, ``ACCEL_X``, ``config key x``) and appears in the error.

    Example:
        >>> BOOLEAN("yes", "ACCEL_DEBUG_MODE"), BOOLEAN.yaml_types
        (True, (<class 'bool'>,))
    """

    kind: str
    parse: Callable[[Any, str], Any]
    yaml_types: tuple[type, ...]
    choices: tuple[str, ...] | None = None

    def __call__(self, value: Any, where: str) -> Any:
        return self.parse(value, where)


def _to_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return str_to_bool(str(value), source=where)
    except ValueError as error:
        raise SettingError(str(error)) from None


def integer(low: int, high: int | None = None) -> Parser:
    """An integer in ``low..high`` (``high=None``: no upper bound).

    Example:
        >>> try:
        ...     integer(0, 3)(5, "--zero_stage")
        ... except SettingError as error:
        ...     print(error)
        --zero_stage=5 must be between 0 and 3
    """

    def parse(value: Any, where: str) -> int:
        try:
            number = int(value)
            if isinstance(value, float) and number != value:
                raise ValueError
        except (TypeError, ValueError):
            raise SettingError(f"{where}={value!r} must be an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingError(f"{where}={value!r} must be {bound}")
        return number

    return Parser("int", parse, (int,))


def _float(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{where}={value!r} must be a number") from None


def _text(value: Any, where: str) -> str:
    return str(value)


def choice(choices: tuple[str, ...], upper: bool = False) -> Parser:
    """One of ``choices``, compared after lower-casing (``upper=True``: upper-casing).

    Example:
        >>> choice(("no", "bf16"))("BF16", "ACCEL_MIXED_PRECISION")
        'bf16'
    """

    def parse(value: Any, where: str) -> str:
        text = str(value).upper() if upper else str(value).lower()
        if text not in choices:
            raise SettingError(
                f"{where}={value!r} is not valid; expected one of {', '.join(choices)}"
            )
        return text

    return Parser("choice", parse, (str,), choices)


def _gpu_ids(value: Any, where: str) -> str:
    text = str(value).replace(" ", "")
    if text == "all":
        return text
    parts = text.split(",")
    if not all(part.isdigit() for part in parts):
        raise SettingError(
            f"{where}={value!r} must be 'all' or comma-separated GPU indices like 0,1"
        )
    return text


def _tee(value: Any, where: str) -> int:
    if isinstance(value, bool):
        return 3 if value else 0
    text = str(value).strip()
    if text not in ("0", "1", "2", "3"):
        raise SettingError(
            f"{where}={value!r} is not valid; expected 0 (no stream), 1 (stdout), 2 (stderr) "
            "or 3 (both) to also print on the console what goes to --log_dir"
        )
    return int(text)


RESHARD_AFTER_FORWARD_VALUES = (
    "true, false, an integer >= 2 (the world size to reshard to), FULL_SHARD or SHARD_GRAD_OP"
)


def parse_reshard_after_forward(value: Any, where: str) -> bool | int:
    """FSDP's ``reshard_after_forward``: a boolean, a world size >= 2, or an FSDP1 strategy name.

    ``FULL_SHARD`` means ``True`` and ``SHARD_GRAD_OP`` means ``False`` (how Accelerate's FSDP1
    configs spell it); an integer reshards to that many ranks after forward.

    Example:
        >>> parse_reshard_after_forward("SHARD_GRAD_OP", "--fsdp_reshard_after_forward")
        False
        >>> try:
        ...     parse_reshard_after_forward("sometimes", "--fsdp_reshard_after_forward")
        ... except SettingError as error:
        ...     print(error)  # doctest: +ELLIPSIS
        --fsdp_reshard_after_forward='sometimes' is not valid; expected true, false, ...
    """
    valid = (
        "true, false, an integer >= 2 (the world size to reshard to), FULL_SHARD or SHARD_GRAD_OP"
    )
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value < 2:
            raise SettingError(f"{where}={value!r} is not valid; expected {valid}")
        return value
    if not isinstance(value, str):
        raise SettingError(f"{where}={value!r} has type {type(value).__name__}; expected {valid}")
    text = value.strip()
    if text.upper() == "FULL_SHARD":
        return True
    if text.upper() == "SHARD_GRAD_OP":
        return False
    if text.isdigit() and int(text) >= 2:
        return int(text)
    try:
        return str_to_bool(text, source=where)
    except ValueError:
        raise SettingError(f"{where}={value!r} is not valid; expected {valid}") from None


BOOLEAN = Parser("bool", _to_bool, (bool,))
NUMBER = Parser("float", _float, (float,))
TEXT = Parser("text", _text, (str,))
RESHARD_AFTER_FORWARD = Parser("reshard", parse_reshard_after_forward, (bool, str, int))
GPU_IDS = Parser("gpu_ids", _gpu_ids, (str,))
# torchrun's --tee: 0 none, 1 stdout, 2 stderr, 3 both (``true`` is 3 in a config file).
TEE = Parser("tee", _tee, (int, bool, str))
