"""Checks of a device map: every value a device, every key a part of the model, all covered.

Example:
    >>> check_device_values({"": "cpu", "0": 1})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from accel.big_model.device_lookup import device_for
from accel.big_model.tied import check_tied_parameters_on_same_device, find_tied_parameters


def is_valid_device(value: Any) -> bool:
    """Whether ``value`` can be a device map value (an index, a device name or a ``torch.device``).

    Example:
        >>> is_valid_device(0), is_valid_device("disk"), is_valid_device("gpu7"), is_valid_device(True)
        (True, True, False, False)
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    if isinstance(value, torch.device):
        return True
    if isinstance(value, str):
        if value in ("disk", "cpu", "mps", "meta"):
            return True
        try:
            torch.device(value)
        except (RuntimeError, ValueError):
            return False
        return True
    return False


_VALID_DEVICES = (
    "an accelerator index (0, 1, ...), 'cpu', 'disk', 'meta', or a torch device string such "
    "as 'cuda:1', 'xpu:0', 'mps'"
)


def check_device_values(device_map: Mapping[str, Any], where: str = "device_map") -> None:
    """Raise ``ValueError`` naming every entry of ``device_map`` whose value is not a device.

    Checked before anything is read, so a typo (``"gpu7"``) is reported as such, not as a
    failure to read the checkpoint.

    Example:
        >>> check_device_values({"": "cpu", "0": 1})
        >>> check_device_values({"": "gpu7"})
        Traceback (most recent call last):
        ...
        ValueError: device_map[''] = 'gpu7' is not a device; valid: an accelerator index (0, 1, ...), 'cpu', 'disk', 'meta', or a torch device string such as 'cuda:1', 'xpu:0', 'mps'
    """
    bad = [f"{where}[{k!r}] = {v!r}" for k, v in device_map.items() if not is_valid_device(v)]
    if bad:
        raise ValueError(f"{', '.join(bad)} is not a device; valid: {_VALID_DEVICES}")


def check_device_map(model: nn.Module, device_map: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``device_map`` covers ``model`` exactly.

    Every key must name a submodule, parameter or buffer of ``model`` (``""`` is the whole
    model), every value must be a device, and every tensor of the state dict must fall under a
    key. The message lists all offending names. Tied parameters mapped to different devices
    only get a warning.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> check_device_map(model, {"0": 0, "1": "cpu"})
        >>> check_device_map(model, {"0": 0})
        Traceback (most recent call last):
        ...
        ValueError: device_map gives no device for these tensors of the model: 1.weight, 1.bias
    """
    modules = {name for name, _ in model.named_modules()}
    tensors = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    tensors |= {name for name, _ in model.named_buffers(remove_duplicate=False)}
    unknown = [k for k in device_map if k != "" and k not in modules and k not in tensors]
    if unknown:
        raise ValueError(
            f"device_map names modules that do not exist in {type(model).__name__}: "
            f"{', '.join(map(repr, unknown))}"
        )
    check_device_values(device_map)
    if "" not in device_map:
        missing = [t for t in model.state_dict() if device_for(device_map, t, None) is None]
        if missing:
            raise ValueError(
                f"device_map gives no device for these tensors of the model: {', '.join(missing)}"
            )
    check_tied_parameters_on_same_device(find_tied_parameters(model), device_map)
