"""Small general helpers Accelerate exposes from ``accelerate.utils`` (torch-free).

Example:
    >>> from accel.state.general import convert_bytes
    >>> convert_bytes(3 * 1024**2)
    '3.0 MB'
"""

from __future__ import annotations

import functools
import socket
from collections.abc import MutableMapping
from typing import Any


def get_pretty_name(obj: Any) -> str:
    """A readable name: ``__qualname__``/``__name__`` of ``obj`` or of its class, else ``str``.

    Example:
        >>> get_pretty_name(dict), get_pretty_name({})
        ('dict', 'dict')
    """
    if not hasattr(obj, "__qualname__") and not hasattr(obj, "__name__"):
        obj = getattr(obj, "__class__", obj)
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or str(obj)


def merge_dicts(source: dict[Any, Any], destination: MutableMapping[Any, Any]) -> Any:
    """Merge ``source`` into ``destination`` recursively (nested dicts merged, other values
    replaced); returns ``destination``.

    Example:
        >>> merge_dicts({"a": {"x": 1}}, {"a": {"y": 2}, "b": 3})
        {'a': {'y': 2, 'x': 1}, 'b': 3}
    """
    for key, value in source.items():
        if isinstance(value, dict):
            merge_dicts(value, destination.setdefault(key, {}))
        else:
            destination[key] = value
    return destination


def recursive_getattr(obj: Any, attr: str) -> Any:
    """``getattr`` along a dotted path (``"a.b.c"``); the error names the missing part.

    Example:
        >>> import os
        >>> recursive_getattr(os, "path.sep")
        '/'
    """

    def step(current: Any, name: str) -> Any:
        try:
            return getattr(current, name)
        except AttributeError:
            raise AttributeError(
                f"{attr!r}: {get_pretty_name(current)} has no attribute {name!r}"
            ) from None

    return functools.reduce(step, attr.split("."), obj)


def is_port_in_use(port: int | None = None) -> bool:
    """Whether something accepts connections on ``localhost:port`` (default 29500, torch's).

    Example:
        >>> isinstance(is_port_in_use(1), bool)
        True
    """
    port = 29500 if port is None else port
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port={port!r} must be an integer between 1 and 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("localhost", port)) == 0


def convert_bytes(size: float) -> str:
    """``size`` in bytes as text in the largest unit below 1024 (binary units, 2 decimals).

    Example:
        >>> convert_bytes(512), convert_bytes(1536)
        ('512 bytes', '1.5 KB')
    """
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024.0:
            return f"{round(size, 2)} {unit}"
        size /= 1024.0
    return f"{round(size, 2)} PB"
