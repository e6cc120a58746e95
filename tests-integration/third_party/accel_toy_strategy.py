"""A training strategy from outside accel, written against the public contract only
(``docs/strategies.md``). ``test_third_party_strategy.py`` installs it (a dist-info with an
``accel.strategies`` entry point) and runs an ``Accelerator`` with ``ACCEL_STRATEGY=toy``.

Example:
    >>> ToyStrategy.name
    'toy'
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from accel.core.strategies import CheckpointContext, PreparedObjects, TrainingStrategy

MARKER = "toy_strategy.json"


class ToyWrapper(torch.nn.Module):
    """What the toy strategy wraps models in (built by the strategy, not by ``prepare_model``).

    Example:
        >>> ToyWrapper(torch.nn.Identity())(torch.ones(1))
        tensor([1.])
    """

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


class ToyStrategy(TrainingStrategy):
    """Wraps models itself, counts backward passes, and adds its own file
    to checkpoints.

    Example:
        >>> ToyStrategy(None).backward_calls
        0
    """

    name = "toy"

    def __init__(self, accelerator: Any, prepared: PreparedObjects | None = None) -> None:
        super().__init__(accelerator, prepared)
        self.backward_calls = 0
        self.loaded_marker: dict[str, Any] | None = None

    def prepare(self, objects: list[Any], device_placement: list[bool | None]) -> list[Any]:
        first = [
            ToyWrapper(obj.to(self.accelerator.device))
            if isinstance(obj, torch.nn.Module)
            else self.prepare_object(obj, placement)
            for obj, placement in zip(objects, device_placement)
        ]
        return [
            self.prepare_object(obj, placement, first_pass=False)
            for obj, placement in zip(first, device_placement)
        ]

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.module if isinstance(model, ToyWrapper) else model

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        self.backward_calls += 1
        loss.backward(**kwargs)

    def save_checkpoint(
        self, folder: str, context: CheckpointContext, safe_serialization: bool = True
    ) -> None:
        super().save_checkpoint(folder, context, safe_serialization)
        if context.writes_shared_files:
            summary = {
                "step": context.step,
                "models": [type(m).__name__ for m in context.models],
                "optimizers": len(context.optimizers),
                "schedulers": len(context.schedulers),
                "dataloaders": len(context.dataloaders),
                "backward_calls": self.backward_calls,
            }
            with open(os.path.join(folder, MARKER), "w") as handle:
                json.dump(summary, handle)

    def load_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        load_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> None:
        super().load_checkpoint(folder, context, load_kwargs, **model_kwargs)
        with open(os.path.join(folder, MARKER)) as handle:
            self.loaded_marker = json.load(handle)
