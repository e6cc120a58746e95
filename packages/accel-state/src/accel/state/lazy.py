"""Package namespaces whose names are imported on first use (PEP 562).

Every accel package exposes its public names from its ``__init__`` without importing the
modules behind them until a name is used: ``import accel.ops`` stays almost free, and the
launcher's torch-free modules stay torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` serving ``table`` (name -> module).

    A module name starting with ``.`` is relative to the package owning ``namespace``.
    A name, once imported, is stored in ``namespace`` so later lookups are plain attribute
    reads.

    Example:
        >>> ns = {"__name__": "demo"}
        >>> getattr_, dir_ = lazy_exports(ns, {"sqrt": "math"})
        >>> getattr_("sqrt")(9.0), "sqrt" in ns
        (3.0, True)
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
