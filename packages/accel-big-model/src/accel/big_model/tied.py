"""Tied parameters: one tensor reachable under several names (e.g. input and output embeddings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from accel.big_model.device_lookup import device_for
from accel.state.process_logging import library_logger

logger = library_logger(__name__)


def find_tied_parameters(model: nn.Module, **kwargs: Any) -> list[list[str]]:
    """Groups of parameter names that share one parameter, each sorted, in model order.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        >>> model[1].weight = model[0].weight
        >>> find_tied_parameters(model)
        [['0.weight', '1.weight']]
    """
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [sorted(set(names)) for names in groups.values() if len(set(names)) > 1]


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    owner = model
    for part in path:
        owner = getattr(owner, part)
    return owner, leaf


def retie_parameters(model: nn.Module, tied_params: Sequence[Sequence[str]]) -> None:
    """Make every name of each group point at one parameter again.

    Loading or hooks can break a tie (each name ends up with its own tensor). For each group
    the first parameter not on the meta device becomes the shared one; a group entirely on the
    meta device is left alone.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        >>> retie_parameters(model, [["0.weight", "1.weight"]])
        >>> model[0].weight is model[1].weight
        True
    """
    for group in tied_params:
        shared = None
        for name in group:
            owner, leaf = _resolve(model, name)
            candidate = getattr(owner, leaf)
            if candidate.device != torch.device("meta"):
                shared = candidate
                break
        if shared is None:
            continue
        for name in group:
            owner, leaf = _resolve(model, name)
            setattr(owner, leaf, shared)


def check_tied_parameters_on_same_device(
    tied_params: Sequence[Sequence[str]], device_map: Mapping[str, Any]
) -> None:
    """Warn when the names of one tied group are mapped to different devices.

    Example:
        >>> check_tied_parameters_on_same_device([["a.w", "b.w"]], {"a": 0, "b": 0})
    """
    for group in tied_params:
        devices = {name: device_for(device_map, name) for name in group}
        if len({str(d) for d in devices.values()}) > 1:
            logger.warning(
                "Tied parameters are mapped to different devices: %s. They share one tensor, so "
                "map their modules to the same device (or use device_map='auto').",
                devices,
            )
