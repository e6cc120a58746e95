"""Whole-model CPU offload hooks: the model lives on CPU and moves to its device per call.

Example:
    >>> from accel.big_model.hooks import add_hook_to_module
    >>> m = add_hook_to_module(nn.Linear(2, 2), CpuOffload("cpu"))
    >>> next(m.parameters()).device.type
    'cpu'
"""

from __future__ import annotations

from typing import Any, Union

import torch
from torch import nn

from accel.big_model.hooks import (
    ModelHook,
    outside_compile,
    remove_hook_from_module,
)
from accel.big_model.tensors import clear_device_cache
from accel.ops.structures import send_to_device

Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias


class CpuOffload(ModelHook):
    """Keep a model on CPU until its forward; then move it (whole) to ``execution_device``.

    It stays there after the forward; ``init_hook`` (or :meth:`UserCpuOffloadHook.offload`)
    sends it back. ``prev_module_hook`` offloads the previous model of a pipeline first.

    Example:
        >>> from accel.big_model.hooks import add_hook_to_module
        >>> m = add_hook_to_module(nn.Linear(2, 2), CpuOffload("cpu"))
        >>> m(torch.ones(1, 2)).device.type
        'cpu'
    """

    def __init__(
        self,
        execution_device: Device | None = None,
        prev_module_hook: UserCpuOffloadHook | None = None,
    ) -> None:
        self.prev_module_hook = prev_module_hook
        if execution_device is None:
            from accel.state import PartialState

            execution_device = PartialState().default_device
        self.execution_device = execution_device

    def init_hook(self, module: nn.Module) -> nn.Module:
        return module.to("cpu")

    @outside_compile
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        if isinstance(self.prev_module_hook, UserCpuOffloadHook):
            previous = next(self.prev_module_hook.model.parameters(), None)
            if previous is not None and previous.device != torch.device("cpu"):
                self.prev_module_hook.offload()
                clear_device_cache(previous.device)
        current = next(module.parameters(), None)
        if current is not None and current.device == torch.device(self.execution_device):
            return args, kwargs
        module.to(self.execution_device)
        return send_to_device(args, self.execution_device), send_to_device(
            kwargs, self.execution_device
        )


class UserCpuOffloadHook:
    """A model and its :class:`CpuOffload` hook, with :meth:`offload` and :meth:`remove`.

    Example:
        >>> from accel.big_model.hooks import add_hook_to_module
        >>> m = nn.Linear(2, 2)
        >>> hook = UserCpuOffloadHook(m, add_hook_to_module(m, CpuOffload("cpu"))._hf_hook)
        >>> hook.offload(); hook.remove()
    """

    def __init__(self, model: nn.Module, hook: ModelHook) -> None:
        self.model = model
        self.hook = hook

    def offload(self) -> None:
        """Send the model back to CPU."""
        self.hook.init_hook(self.model)

    def remove(self) -> None:
        """Remove the hook from the model."""
        remove_hook_from_module(self.model)
