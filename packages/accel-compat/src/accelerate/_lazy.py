"""Serve an Accelerate module's names from accel, imported on first use (PEP 562).

Every module of this package is two lines: ``__getattr__, __dir__ = serve(globals())``. The
names come from ``_mapping.NAMES[<module>]`` (``"accel.pkg:name"``); a name in
``_mapping.MISSING[<module>]`` raises ``NotInAccelError`` with one line naming it and the accel
area that would own it; any other name is a plain ``AttributeError``.

Example:
    >>> ns = {"__name__": "accelerate.utils"}
    >>> getattr_, _ = serve(ns)
    >>> getattr_("set_seed").__module__.startswith("accel.")
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from accelerate._mapping import MISSING, NAMES


class NotInAccelError(ImportError):
    """An Accelerate name that accel does not implement (the message names the accel area).

    Example:
        >>> issubclass(NotInAccelError, ImportError)
        True
    """


def resolve(target: str) -> Any:
    """Import ``"accel.pkg.module:name"`` and return the object.

    Example:
        >>> resolve("accel.ops:set_seed").__name__
        'set_seed'
    """
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for the Accelerate module ``namespace``.

    Example:
        >>> getattr_, dir_ = serve({"__name__": "accelerate.hooks"})
        >>> "add_hook_to_module" in dir_()
        True
    """
    module = namespace["__name__"]
    names = NAMES.get(module, {})
    missing = MISSING.get(module, {})

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is not None:
            value = resolve(target)
            namespace[name] = value
            return value
        area = missing.get(name)
        if area is not None:
            raise NotInAccelError(
                f"{module}.{name} is not implemented by accel (area: {area}); see docs/compat.md"
            )
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
