"""The hooks ``save_state``/``load_state`` call, and the objects registered for checkpoints.

Example:
    >>> from collections import OrderedDict
    >>> registry = OrderedDict()
    >>> handle = add_hook(registry, print)
    >>> len(registry)
    1
    >>> handle.remove()
    >>> len(registry)
    0
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.utils import hooks

from accel.core.checkpoint.context import CheckpointContext

__all__ = [
    "add_hook",
    "check_checkpointable",
    "run_load_pre_hooks",
    "run_save_pre_hooks",
]


def add_hook(
    registry: OrderedDict[int, Callable[..., None]], hook: Callable[..., None]
) -> hooks.RemovableHandle:
    """Add ``hook`` to ``registry``; the returned handle's ``remove()`` takes it out again.

    Example:
        >>> handle = add_hook(OrderedDict(), print)
    """
    handle = hooks.RemovableHandle(registry)
    registry[handle.id] = hook
    return handle


def run_save_pre_hooks(
    context: CheckpointContext, weights: list[Mapping[str, torch.Tensor]], folder: str
) -> None:
    """Call the hooks of ``register_save_state_pre_hook`` as Accelerate does:
    ``hook(models, weights, folder)``.

    Example:
        >>> run_save_pre_hooks(CheckpointContext(save_pre_hooks=[print]), [], "ckpt")
        [] [] ckpt
    """
    for hook in list(context.save_pre_hooks):
        hook(context.models, weights, folder)


def run_load_pre_hooks(context: CheckpointContext, folder: str) -> list[torch.nn.Module]:
    """Call the hooks of ``register_load_state_pre_hook`` as Accelerate does:
    ``hook(models, folder)``; returns the models left to load (a hook may remove those it
    loaded itself from the list).

    Example:
        >>> run_load_pre_hooks(CheckpointContext(), "ckpt")
        []
    """
    models = list(context.models)
    for hook in list(context.load_pre_hooks):
        hook(models, folder)
    return models


def check_checkpointable(objects: Iterable[Any]) -> None:
    """Refuse, naming them, objects without ``state_dict()`` and ``load_state_dict()``
    (what ``register_for_checkpointing`` accepts).

    Example:
        >>> check_checkpointable([torch.nn.Linear(1, 1)])
    """
    invalid = [
        obj
        for obj in objects
        if not (
            callable(getattr(obj, "state_dict", None))
            and callable(getattr(obj, "load_state_dict", None))
        )
    ]
    if invalid:
        names = ", ".join(f"{type(obj).__qualname__} ({obj!r:.60})" for obj in invalid)
        raise ValueError(
            "register_for_checkpointing needs objects with state_dict() and load_state_dict() "
            f"methods; these have not: {names}"
        )
