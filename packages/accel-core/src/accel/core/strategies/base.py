"""The interface every training strategy implements, with the single-process defaults.

The contract (see ``docs/strategies.md``): a strategy is built with the ``Accelerator``
(whose public API it may use) and a read-only :class:`PreparedObjects` view; ``prepare``
receives the objects of one ``prepare`` call and returns them prepared, in the same order
(the Accelerator records every new model, optimizer and scheduler returned); the checkpoint
hooks receive a :class:`~accel.core.checkpoint.context.CheckpointContext` that holds
everything they save or restore.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from accel.core.checkpoint.contents import collect_checkpoint_files
from accel.core.checkpoint.context import CheckpointContext
from accel.core.checkpoint.hooks import run_load_pre_hooks, run_save_pre_hooks
from accel.core.checkpoint.loading import read_checkpoint_files
from accel.core.checkpoint.writer import CheckpointFile, write_files
from accel.core.optimizer import AcceleratedOptimizer
from accel.core.strategies.prepared import PreparedObjects


class TrainingStrategy:
    """How one kind of job prepares models and runs the backward pass.

    An ``Accelerator`` creates exactly one strategy, chosen from its ``distributed_type``
    (or named by ``ACCEL_STRATEGY``). Subclasses override what differs; the defaults are right
    for a single process. A third-party strategy is a subclass exposed under the entry-point
    group ``accel.strategies``.

    ``accelerator`` is the Accelerator that owns this strategy (a strategy uses its public
    API only); ``prepared`` is the read-only view of what it prepared so far.

    Example:
        >>> class MyStrategy(TrainingStrategy):
        ...     name = "mine"
        ...     def wrap_model(self, model):
        ...         return model
    """

    name = "base"
    # True when the strategy casts and scales for fp16/bf16 itself (DeepSpeed's engines): the
    # Accelerator then creates no GradScaler and wraps no forward in autocast.
    owns_mixed_precision = False
    # True when the strategy's backward divides the loss by the accumulation steps itself.
    scales_loss_for_accumulation = False
    # True when accumulated gradients live in the parameters' ``.grad`` (saved with a
    # checkpoint taken inside an accumulation window); False when the strategy keeps them
    # itself (DeepSpeed's engines).
    gradients_on_parameters = True
    # The extra keywords ``save_state(**kwargs)`` may pass to :meth:`save_checkpoint` (the
    # options of the strategy's own save function); others are refused before anything is
    # written.
    save_model_kwargs: tuple[str, ...] = ()

    def __init__(self, accelerator: Any, prepared: PreparedObjects | None = None) -> None:
        self.accelerator = accelerator
        self.prepared = prepared if prepared is not None else PreparedObjects()

    def prepare(self, objects: list[Any], device_placement: list[bool | None]) -> list[Any]:
        """Prepare all objects of one ``prepare`` call and return them in the same order
        (models, optimizers and dataloaders first, then schedulers, so schedulers see the
        wrapped optimizers). The Accelerator records every model, ``AcceleratedOptimizer`` and
        ``AcceleratedScheduler`` returned that it does not hold yet.

        Example:
            >>> strategy.prepare([model, optimizer], [None, None])  # doctest: +SKIP
        """
        first = [self.prepare_object(o, d) for o, d in zip(objects, device_placement)]
        return [
            self.prepare_object(o, d, first_pass=False) for o, d in zip(first, device_placement)
        ]

    def prepare_object(
        self, obj: Any, device_placement: bool | None = None, first_pass: bool = True
    ) -> Any:
        """The default preparation of one object, through the Accelerator's public
        ``prepare_data_loader``/``prepare_model``/``prepare_optimizer`` (first pass) and
        ``prepare_scheduler`` (second pass); anything else comes back unchanged.

        Example:
            >>> model = strategy.prepare_object(model)  # doctest: +SKIP
        """
        accelerator = self.accelerator
        if first_pass:
            if isinstance(obj, torch.utils.data.DataLoader):
                return accelerator.prepare_data_loader(obj, device_placement=device_placement)
            if isinstance(obj, torch.nn.Module):
                return accelerator.prepare_model(obj, device_placement=device_placement)
            if isinstance(obj, torch.optim.Optimizer):
                return accelerator.prepare_optimizer(obj, device_placement=device_placement)
        elif isinstance(obj, LRScheduler):
            return accelerator.prepare_scheduler(obj)
        return obj

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Wrap a model that is on its device (e.g. in DDP); the default returns it.

        Example:
            >>> strategy.wrap_model(torch.nn.Linear(1, 1))  # doctest: +SKIP
        """
        return model

    def wrap_optimizer(self, optimizer: AcceleratedOptimizer) -> AcceleratedOptimizer:
        """Adapt a prepared optimizer (e.g. its step) to this job; the default returns it.

        Example:
            >>> optimizer = strategy.wrap_optimizer(optimizer)  # doctest: +SKIP
        """
        return optimizer

    def wrap_dataloader(self, dataloader: Any) -> Any:
        """Adapt a prepared dataloader to this job's device; the default returns it.

        A strategy should return the same object (changed in place) where it can: checkpoints
        find a dataloader's position through its identity.

        Example:
            >>> loader = strategy.wrap_dataloader(loader)  # doctest: +SKIP
        """
        return dataloader

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """A context in which backward passes do not synchronize gradients.

        Example:
            >>> with strategy.no_sync(model):  # doctest: +SKIP
            ...     loss.backward()
        """
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Run the backward pass of an already scaled loss.

        Example:
            >>> strategy.backward(loss)  # doctest: +SKIP
        """
        loss.backward(**kwargs)

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The user's model inside whatever this strategy wrapped it in.

        Example:
            >>> strategy.unwrap_model(model)  # doctest: +SKIP
        """
        return model

    def clip_grad_norm_(
        self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2.0
    ) -> torch.Tensor:
        """Clip the total gradient norm; returns the norm before clipping.

        Example:
            >>> strategy.clip_grad_norm_(model.parameters(), 1.0)  # doctest: +SKIP
        """
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=norm_type)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict (every process must call it for sharded strategies).

        Example:
            >>> strategy.state_dict(model)  # doctest: +SKIP
        """
        return self.unwrap_model(model).state_dict()

    def optimizer_state_dict(self, optimizer: Any) -> dict[str, Any]:
        """The optimizer state a checkpoint stores (every process calls it; sharded strategies
        gather).

        Example:
            >>> strategy.optimizer_state_dict(optimizer)["param_groups"]  # doctest: +SKIP
        """
        return optimizer.state_dict()

    def load_optimizer_state_dict(self, optimizer: Any, state: dict[str, Any]) -> None:
        """Put a state from :meth:`optimizer_state_dict` back (every process calls it).

        Example:
            >>> strategy.load_optimizer_state_dict(optimizer, state)  # doctest: +SKIP
        """
        optimizer.load_state_dict(state)

    def load_model_state_dict(
        self, model: torch.nn.Module, state_dict: dict[str, torch.Tensor], **kwargs: Any
    ) -> Any:
        """Load full (unsharded) weights into a prepared model without strict checking;
        returns the missing/unexpected keys as ``load_state_dict`` does.

        Example:
            >>> strategy.load_model_state_dict(model, weights).missing_keys  # doctest: +SKIP
            []
        """
        return model.load_state_dict(state_dict, strict=False, **kwargs)

    @property
    def plain_model_loading(self) -> bool:
        """Whether loading weights is plain tensor copying (this class keeps the default
        :meth:`load_model_state_dict`): checkpoint loads may then read bytes straight into
        the parameters.

        Example:
            >>> TrainingStrategy(None).plain_model_loading
            True
        """
        return type(self).load_model_state_dict is TrainingStrategy.load_model_state_dict

    def checkpoint_files(
        self, folder: str, context: CheckpointContext, safe_serialization: bool = True
    ) -> list[CheckpointFile]:
        """The files this process contributes to a checkpoint in ``folder``, not yet written.

        The default is Accelerate's layout (``model.safetensors``, ``optimizer.bin``, ...) of
        ``context``'s objects, after the ``register_save_state_pre_hook`` hooks ran.
        ``save_state(async_save=True)`` stages these payloads to CPU and writes them in the
        background.

        Example:
            >>> [f.name for f in strategy.checkpoint_files("ckpt", context)]  # doctest: +SKIP
            ['model.safetensors', 'optimizer.bin', 'random_states_0.pkl']
        """
        # a list the hooks may edit (Accelerate's hooks pop the weights they saved themselves)
        weights: list[Mapping[str, torch.Tensor]] = [
            self.checkpoint_state_dict(model) for model in context.models
        ]
        run_save_pre_hooks(context, weights, folder)
        return collect_checkpoint_files(context, self, weights, safe_serialization)

    def checkpoint_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The weights ``save_state`` stores for ``model``: its full state dict (every process
        calls it). Sharded strategies gather, whatever their ``get_state_dict`` layout.

        Example:
            >>> strategy.checkpoint_state_dict(model).keys()  # doctest: +SKIP
        """
        return self.accelerator.get_state_dict(model)

    def save_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        safe_serialization: bool = True,
        **model_kwargs: Any,
    ) -> None:
        """Write ``context``'s training state into ``folder`` (it exists; every process calls
        this).

        ``save_state`` owns the rest: the temporary folder, the completion marker, the rename
        and pruning. The default writes :meth:`checkpoint_files`; a strategy with its own
        format (DeepSpeed) overrides this and :meth:`load_checkpoint` together.
        ``model_kwargs`` are ``save_state``'s extra keywords, already checked against
        :attr:`save_model_kwargs` (empty here: the default format has no save function
        taking options).

        Example:
            >>> strategy.save_checkpoint("ckpt/.checkpoint_0.partial", context)  # doctest: +SKIP
        """
        write_files(folder, self.checkpoint_files(folder, context, safe_serialization))

    @property
    def supports_async_save(self) -> bool:
        """Whether ``save_state(async_save=True)`` can stage this strategy's checkpoint: true
        unless it writes its own format (overrides :meth:`save_checkpoint` but not
        :meth:`checkpoint_files`).

        Example:
            >>> strategy.supports_async_save  # doctest: +SKIP
            True
        """
        cls = type(self)
        return (
            cls.save_checkpoint is TrainingStrategy.save_checkpoint
            or cls.checkpoint_files is not TrainingStrategy.checkpoint_files
        )

    def load_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        load_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> None:
        """Load what :meth:`save_checkpoint` wrote into ``context``'s objects (and the saved
        step into ``context.step``).

        Example:
            >>> strategy.load_checkpoint("ckpt", context)  # doctest: +SKIP
        """
        models = run_load_pre_hooks(context, folder)
        read_checkpoint_files(context, self, folder, models, load_kwargs, **model_kwargs)
