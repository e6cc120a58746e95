"""``XLAStrategy``: what ``Accelerator.prepare``, ``backward`` and saving do on XLA devices."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch

from accel.core.optimizer import AcceleratedOptimizer
from accel.core.strategies.base import TrainingStrategy
from accel.core.strategies.prepared import PreparedObjects
from accel.xla.loader import mark_steps_per_batch
from accel.xla.optimizer import XLAOptimizer, reduce_gradients
from accel.xla.runtime import mark_step


class XLAStrategy(TrainingStrategy):
    """Data parallelism the torch-xla way: no model wrapper, gradients all-reduced at the step.

    - Models move to the XLA device in ``prepare``; ``module.to("xla")`` makes new parameter
      objects, so optimizers prepared with the model are switched to the moved parameters.
    - Optimizers become :class:`~accel.xla.optimizer.XLAOptimizer` (reduce, step, mark).
    - Dataloaders mark one XLA step per training step (see :mod:`accel.xla.loader`).
    - ``clip_grad_norm_`` reduces gradients first, so every process clips the same values.
    - ``state_dict`` (used by ``save_model`` and ``save_state``) returns CPU tensors; the main
      process writes, as elsewhere.

    Example:
        >>> accelerator = Accelerator()  # under accel launch --tpu  # doctest: +SKIP
        >>> type(accelerator.strategy).__name__  # doctest: +SKIP
        'XLAStrategy'
    """

    name = "xla"

    def __init__(self, accelerator: Any, prepared: PreparedObjects | None = None) -> None:
        super().__init__(accelerator, prepared)
        # id(host parameter) -> (a weak reference to it, the parameter that replaced it on the
        # XLA device). Keyed by id: tensors compare element-wise, so they make poor dict keys.
        self._moved: dict[int, tuple[weakref.ref[torch.Tensor], torch.nn.Parameter]] = {}

    def _replacement(self, parameter: torch.Tensor) -> torch.Tensor:
        entry = self._moved.get(id(parameter))
        if entry is None or entry[0]() is not parameter:
            return parameter
        return entry[1]

    def prepare(self, objects: list[Any], device_placement: list[bool | None]) -> list[Any]:
        """Prepare as usual, then point optimizers at the parameters moved to the device.

        Example:
            >>> model, optimizer = strategy.prepare([model, optimizer], [None, None])  # doctest: +SKIP
        """
        before = [
            dict(obj.named_parameters()) if isinstance(obj, torch.nn.Module) else None
            for obj in objects
        ]
        result = super().prepare(objects, device_placement)
        for old, new in zip(before, result):
            if old is None or not isinstance(new, torch.nn.Module):
                continue
            moved = dict(self.unwrap_model(new).named_parameters())
            for name, parameter in old.items():
                replacement = moved.get(name)
                if replacement is not None and replacement is not parameter:
                    self._moved[id(parameter)] = (weakref.ref(parameter), replacement)
        for optimizer in self.prepared.optimizers:
            self._switch(optimizer)
        return result

    def _switch(self, optimizer: AcceleratedOptimizer) -> None:
        for group in optimizer.param_groups:
            group["params"] = [self._replacement(p) for p in group["params"]]

    def wrap_optimizer(self, optimizer: AcceleratedOptimizer) -> AcceleratedOptimizer:
        """The prepared optimizer as an :class:`~accel.xla.optimizer.XLAOptimizer`.

        Example:
            >>> type(strategy.wrap_optimizer(optimizer)).__name__  # doctest: +SKIP
            'XLAOptimizer'
        """
        self._switch(optimizer)
        return XLAOptimizer.from_prepared(optimizer)

    def wrap_dataloader(self, dataloader: Any) -> Any:
        """The prepared dataloader, marking one XLA step per training step.

        Example:
            >>> loader = strategy.wrap_dataloader(loader)  # doctest: +SKIP
        """
        return mark_steps_per_batch(dataloader)

    def clip_grad_norm_(
        self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2.0
    ) -> torch.Tensor:
        """Reduce gradients across processes (once per step), then clip them.

        Example:
            >>> strategy.clip_grad_norm_(model.parameters(), 1.0)  # doctest: +SKIP
        """
        for optimizer in self.prepared.optimizers:
            if isinstance(optimizer, AcceleratedOptimizer):
                reduce_gradients(optimizer)
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=norm_type)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict on the CPU (tied weights stay one tensor).

        Example:
            >>> strategy.state_dict(model)["weight"].device  # doctest: +SKIP
            device(type='cpu')
        """
        mark_step()  # run what is pending, so the copies below are plain transfers
        copies: dict[int, torch.Tensor] = {}
        result: dict[str, torch.Tensor] = {}
        for name, value in self.unwrap_model(model).state_dict(keep_vars=True).items():
            key = id(value)
            if key not in copies:
                copies[key] = value.detach().to("cpu")
            result[name] = copies[key]
        return result
