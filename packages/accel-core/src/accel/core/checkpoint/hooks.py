"""The hooks ``save_state``/``load_state`` call, and the objects registered for checkpoints.

Example:
    >>> handle = register_save_state_pre_hook(accelerator, my_hook)  # doctest: +SKIP
    >>> handle.remove()  # doctest: +SKIP
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils import hooks

if TYPE_CHECKING:
    from accel.core.accelerator import Accelerator

__all__ = [
    "register_for_checkpointing",
    "register_load_state_pre_hook",
    "register_save_state_pre_hook",
    "run_load_pre_hooks",
    "run_save_pre_hooks",
]


def _hook_dict(accelerator: Accelerator, name: str) -> OrderedDict[int, Callable[..., None]]:
    hooks_by_id = accelerator.__dict__.get(name)
    if hooks_by_id is None:
        hooks_by_id = accelerator.__dict__[name] = OrderedDict()
    return hooks_by_id


def run_save_pre_hooks(
    accelerator: Accelerator, weights: list[Mapping[str, torch.Tensor]], folder: str
) -> None:
    """Call the hooks of ``register_save_state_pre_hook`` as Accelerate does.

    Example:
        >>> run_save_pre_hooks(accelerator, [model.state_dict()], "ckpt")  # doctest: +SKIP
    """
    for hook in list(_hook_dict(accelerator, "_save_model_state_pre_hook").values()):
        hook(accelerator._models, weights, folder)


def run_load_pre_hooks(accelerator: Accelerator, folder: str) -> list[torch.nn.Module]:
    """Call the hooks of ``register_load_state_pre_hook`` as Accelerate does; returns the
    models left to load (a hook may remove those it loaded itself from the list).

    Example:
        >>> run_load_pre_hooks(accelerator, "ckpt")  # doctest: +SKIP
    """
    models = list(accelerator._models)
    for hook in list(_hook_dict(accelerator, "_load_model_state_pre_hook").values()):
        hook(models, folder)
    return models


def register_save_state_pre_hook(
    accelerator: Accelerator, hook: Callable[..., None]
) -> hooks.RemovableHandle:
    """See :meth:`Accelerator.register_save_state_pre_hook`.

    Example:
        >>> handle = register_save_state_pre_hook(accelerator, my_hook)  # doctest: +SKIP
    """
    registry = _hook_dict(accelerator, "_save_model_state_pre_hook")
    handle = hooks.RemovableHandle(registry)
    registry[handle.id] = hook
    return handle


def register_load_state_pre_hook(
    accelerator: Accelerator, hook: Callable[..., None]
) -> hooks.RemovableHandle:
    """See :meth:`Accelerator.register_load_state_pre_hook`.

    Example:
        >>> handle = register_load_state_pre_hook(accelerator, my_hook)  # doctest: +SKIP
    """
    registry = _hook_dict(accelerator, "_load_model_state_pre_hook")
    handle = hooks.RemovableHandle(registry)
    registry[handle.id] = hook
    return handle


def register_for_checkpointing(accelerator: Accelerator, *objects: Any) -> None:
    """See :meth:`Accelerator.register_for_checkpointing`.

    Example:
        >>> register_for_checkpointing(accelerator, ema)  # doctest: +SKIP
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
    accelerator._custom_objects.extend(objects)
