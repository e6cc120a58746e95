"""Reading plain environment variables by their exact name (Accelerate's ``utils`` helpers).

The launcher protocol (``ACCEL_*`` with ``ACCELERATE_*`` aliases) lives in
:mod:`accel.state.env`; these helpers read one exact key, for code written against
Accelerate. Torch-free.

Example:
    >>> from accel.state.env_reading import get_int_from_env
    >>> get_int_from_env(["NO_SUCH_RANK_VARIABLE"], 3)
    3
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from accel.state.env import ALIAS_PREFIX, PREFIX, str_to_bool

_T = TypeVar("_T")
_FORBIDDEN_IN_ENV = (";", "\n", "<", ">", " ")


def get_int_from_env(env_keys: Iterable[str], default: int) -> int:
    """The first of ``env_keys`` set to a non-negative integer, else ``default``.

    A value that is not an integer raises ``ValueError`` naming the variable.

    Example:
        >>> from accel.state import patch_environment
        >>> with patch_environment(MY_RANK="2"):
        ...     get_int_from_env(["OTHER_RANK", "MY_RANK"], 0)
        2
    """
    for key in env_keys:
        raw = os.environ.get(key)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"environment variable {key}={raw!r} must be an integer") from None
        if value >= 0:
            return value
    return default


def parse_flag_from_env(key: str, default: bool = False) -> bool:
    """Environment variable ``key`` read as a truth value (``1/true/yes/on``, ``0/false/...``).

    Example:
        >>> from accel.state import patch_environment
        >>> with patch_environment(MY_FLAG="yes"):
        ...     parse_flag_from_env("MY_FLAG")
        True
    """
    raw = os.environ.get(key)
    if raw is None:
        return default
    return str_to_bool(raw, source=f"environment variable {key}")


def parse_choice_from_env(key: str, default: str = "no") -> str:
    """Environment variable ``key`` as a string, ``default`` when unset.

    Example:
        >>> parse_choice_from_env("NO_SUCH_CHOICE_VARIABLE", "bf16")
        'bf16'
    """
    return os.environ.get(key, str(default))


def convert_dict_to_env_variables(current_env: Mapping[str, str]) -> list[str]:
    """``KEY=value`` lines for an env file; entries that are empty or contain ``; < > space``
    or newlines are refused with a ``ValueError`` naming them (Accelerate skips them silently).

    Example:
        >>> convert_dict_to_env_variables({"ACCEL_DEBUG_MODE": "1"})
        ['ACCEL_DEBUG_MODE=1\\n']
    """
    lines = []
    for key, value in current_env.items():
        text = f"{key}{value}"
        if not key or not value or any(char in text for char in _FORBIDDEN_IN_ENV):
            raise ValueError(
                f"cannot write {key}={value!r} as an environment line: key and value must be "
                f"non-empty and free of {', '.join(repr(c) for c in _FORBIDDEN_IN_ENV)}"
            )
        lines.append(f"{key}={value}\n")
    return lines


def are_libraries_initialized(*library_names: str) -> list[str]:
    """The names among ``library_names`` that are already imported in this process.

    Example:
        >>> are_libraries_initialized("sys", "no_such_module_here")
        ['sys']
    """
    return [name for name in library_names if name in sys.modules]


@contextlib.contextmanager
def _restored_environment(prefixes: tuple[str, ...]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(prefixes)]:
            if key not in saved:
                del os.environ[key]
        os.environ.update(saved)


def purge_accelerate_environment(func_or_cls: _T) -> _T:
    """Decorator: ``ACCELERATE_*``/``ACCEL_*`` variables set inside a function (or each
    ``test*`` method of a class and its subclasses) are restored afterwards.

    Example:
        >>> @purge_accelerate_environment
        ... def configure():
        ...     os.environ["ACCELERATE_MIXED_PRECISION"] = "fp16"
        >>> configure()
        >>> "ACCELERATE_MIXED_PRECISION" in os.environ
        False
    """
    prefixes = (ALIAS_PREFIX, PREFIX)

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(func, "_accel_purges_environment", False):
            return func

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _restored_environment(prefixes):
                return func(*args, **kwargs)

        wrapper._accel_purges_environment = True  # type: ignore[attr-defined]
        return wrapper

    if not isinstance(func_or_cls, type):
        return wrap(func_or_cls)  # type: ignore[arg-type, return-value]

    def wrap_tests(cls: type) -> None:
        for name in dir(cls):
            method = getattr(cls, name)
            if name.startswith("test") and callable(method):
                setattr(cls, name, wrap(method))

    wrap_tests(func_or_cls)
    previous = func_or_cls.__dict__.get("__init_subclass__")

    def init_subclass(cls: type, **kwargs: Any) -> None:
        if previous is not None:
            previous.__func__(cls, **kwargs)
        wrap_tests(cls)

    func_or_cls.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]
    return func_or_cls
