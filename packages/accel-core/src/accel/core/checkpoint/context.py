"""What a checkpoint hook works on, passed explicitly: :class:`CheckpointContext` (the
prepared objects and this process's place in the job), :class:`StateDictHooks` (how the
training strategy reads and writes model and optimizer states) and :class:`CheckpointHooks`
(how it writes and reads a whole checkpoint folder).

``Accelerator.save_state``/``load_state`` build a context from the objects ``prepare``
returned and hand it to the strategy's ``save_checkpoint``/``load_checkpoint``; nothing in
the checkpoint code reads the Accelerator itself.

Example:
    >>> import torch
    >>> context = CheckpointContext(models=[torch.nn.Linear(1, 1)])
    >>> context.step, context.process_index, context.writes_shared_files
    (0, 0, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import torch

__all__ = ["CheckpointContext", "CheckpointHooks", "StateDictHooks"]


def _identity(model: torch.nn.Module) -> torch.nn.Module:
    return model


@dataclasses.dataclass
class CheckpointContext:
    """The prepared objects a checkpoint saves or restores, and where this process stands.

    The lists are the Accelerator's own (in ``prepare`` order), so a pre-hook that removes a
    model from ``models`` while loading sees the same list as in Accelerate. ``step`` is the
    Accelerator's step counter: a load sets it to the saved value, and ``load_state`` copies
    it back.

    - ``writes_shared_files``: this process writes the files every process shares (weights,
      optimizers, ...): the main process, or each node's main process with
      ``ProjectConfiguration(save_on_each_node=True)``.
    - ``unwrap_model``: the user's module inside what ``prepare`` returned.
    - ``accumulation_steps``: gradient accumulation steps (a save inside a window also stores
      the gradients accumulated so far).
    - ``save_pre_hooks``/``load_pre_hooks``: the hooks of ``register_save_state_pre_hook`` and
      ``register_load_state_pre_hook``, in registration order.

    Example:
        >>> CheckpointContext(step=7).step
        7
    """

    models: list[torch.nn.Module] = dataclasses.field(default_factory=list)
    optimizers: list[Any] = dataclasses.field(default_factory=list)
    schedulers: list[Any] = dataclasses.field(default_factory=list)
    dataloaders: list[Any] = dataclasses.field(default_factory=list)
    custom_objects: list[Any] = dataclasses.field(default_factory=list)
    scaler: Any = None
    step: int = 0
    process_index: int = 0
    num_processes: int = 1
    writes_shared_files: bool = True
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    unwrap_model: Callable[[torch.nn.Module], torch.nn.Module] = _identity
    accumulation_steps: int = 1
    save_pre_hooks: list[Callable[..., None]] = dataclasses.field(default_factory=list)
    load_pre_hooks: list[Callable[..., None]] = dataclasses.field(default_factory=list)


class StateDictHooks(Protocol):
    """The part of a training strategy the checkpoint files need (``TrainingStrategy``
    implements it): how model and optimizer states are gathered and put back.

    ``plain_model_loading`` is true when loading a model's weights is nothing but copying
    tensors (the strategy keeps the default ``load_model_state_dict``): bytes may then be read
    straight into the parameters. ``gradients_on_parameters`` is true when accumulated
    gradients live in the parameters' ``.grad``.

    Example:
        >>> from accel.core.strategies import TrainingStrategy
        >>> TrainingStrategy.gradients_on_parameters
        True
    """

    @property
    def plain_model_loading(self) -> bool: ...

    @property
    def gradients_on_parameters(self) -> bool: ...

    def optimizer_state_dict(self, optimizer: Any) -> dict[str, Any]: ...

    def load_optimizer_state_dict(self, optimizer: Any, state: dict[str, Any]) -> None: ...

    def load_model_state_dict(
        self, model: torch.nn.Module, state_dict: dict[str, torch.Tensor], **kwargs: Any
    ) -> Any: ...


class CheckpointHooks(Protocol):
    """The part of a training strategy ``save_state``/``load_state`` call
    (``TrainingStrategy`` implements it with Accelerate's file layout).

    Example:
        >>> from accel.core.strategies import TrainingStrategy
        >>> TrainingStrategy(None).supports_async_save
        True
    """

    name: str
    save_model_kwargs: tuple[str, ...]

    @property
    def supports_async_save(self) -> bool: ...

    def checkpoint_files(
        self, folder: str, context: CheckpointContext, safe_serialization: bool = True
    ) -> list[Any]: ...

    def save_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        safe_serialization: bool = True,
        **model_kwargs: Any,
    ) -> None: ...

    def load_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        load_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> None: ...
