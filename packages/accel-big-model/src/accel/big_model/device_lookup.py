"""The device a device map gives a module, parameter or buffer: its longest mapped prefix.

Example:
    >>> device_for({"": "cpu", "h.1": 0}, "h.1.weight"), device_for({"": "cpu", "h.1": 0}, "h.10.weight")
    (0, 'cpu')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["device_for"]

_Default = TypeVar("_Default")


class _Raise:
    """Marker: no ``default`` was given, so an uncovered name raises."""


_RAISE = _Raise()


def device_for(
    device_map: Mapping[str, Any], name: str, default: _Default | _Raise = _RAISE
) -> Any | _Default:
    """The device ``device_map`` gives ``name``: the entry of its longest dotted prefix.

    ``"h.1"`` covers ``h.1`` and ``h.1.*`` but not ``h.10``; ``""`` covers everything (as in
    Accelerate). A name no entry covers returns ``default`` if one is given, otherwise raises
    ``ValueError`` naming it.

    Example:
        >>> device_for({"h.1": 0, "h.10": "cpu"}, "h.10.bias")
        'cpu'
        >>> device_for({"h.1": 0}, "lm_head.weight", default=None) is None
        True
        >>> device_for({"h.1": 0}, "lm_head.weight")
        Traceback (most recent call last):
        ...
        ValueError: device_map has no entry for 'lm_head.weight' or any module holding it (keys: 'h.1'); map it or one of its parent modules, or '' for the whole model
    """
    probe = name
    while probe not in device_map:
        if not probe:
            if isinstance(default, _Raise):
                keys = ", ".join(repr(k) for k in list(device_map)[:10])
                more = ", ..." if len(device_map) > 10 else ""
                raise ValueError(
                    f"device_map has no entry for {name!r} or any module holding it (keys: "
                    f"{keys}{more}); map it or one of its parent modules, or '' for the whole model"
                )
            return default
        probe = probe.rpartition(".")[0]
    return device_map[probe]
