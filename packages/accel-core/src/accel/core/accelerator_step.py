"""The ``Accelerator``'s training-step methods: ``backward``, ``accumulate``, ``no_sync``,
gradient unscaling and clipping, ``autocast``.

Example:
    >>> from accel.core import Accelerator
    >>> issubclass(Accelerator, TrainingStepMixin)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from accel.core.accelerator_parts import AcceleratorParts
from accel.core.optimizer import AcceleratedOptimizer
from accel.core.precision import (
    autocast_context,
)


class TrainingStepMixin(AcceleratorParts):
    """The training step, mixed into :class:`~accel.core.Accelerator`.

    Example:
        >>> accelerator.backward(loss)  # doctest: +SKIP
    """

    # -- the training step ---------------------------------------------------------------

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Use instead of ``loss.backward()``: scales for accumulation and fp16, then backward.

        Example:
            >>> accelerator.backward(loss)  # doctest: +SKIP
        """
        steps = self.gradient_accumulation_steps
        # Dividing by 1 changes nothing but costs an op and an autograd node per step.
        if steps != 1 and not getattr(self.strategy, "scales_loss_for_accumulation", False):
            loss = loss / steps
        if self.scaler is not None:
            self.scaler.scale(loss).backward(**kwargs)
        else:
            self.strategy.backward(loss, **kwargs)

    def _do_sync(self) -> None:
        state = self.gradient_state
        if state.sync_with_dataloader and state.end_of_dataloader:
            self.step = 0
            state.sync_gradients = True
        else:
            self.step += 1
            state.sync_gradients = self.step % state.num_steps == 0

    @contextlib.contextmanager
    def accumulate(self, *models: torch.nn.Module) -> Iterator[None]:
        """Accumulate gradients: inside, backward passes of non-final steps skip synchronization.

        Optimizers and schedulers prepared by this accelerator step only on the last step of
        each group of ``gradient_accumulation_steps`` (and at the end of the dataloader).

        Example:
            >>> for batch in loader:  # doctest: +SKIP
            ...     with accelerator.accumulate(model):
            ...         accelerator.backward(model(batch).mean())
            ...         optimizer.step(); optimizer.zero_grad()
        """
        self._do_sync()
        allow_sync = self.sync_gradients or (
            self.use_distributed and self.gradient_state.plugin_kwargs.get("sync_each_batch", False)
        )
        if allow_sync:  # the common case: nothing to enter
            yield
            return
        with contextlib.ExitStack() as stack:
            for model in models:
                stack.enter_context(self.no_sync(model))
            yield

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """A context in which backward passes do not synchronize ``model``'s gradients.

        Example:
            >>> with accelerator.no_sync(model):  # doctest: +SKIP
            ...     accelerator.backward(loss)
        """
        if not self.use_distributed:
            return contextlib.nullcontext()
        return self.strategy.no_sync(model)

    @staticmethod
    @contextlib.contextmanager
    def trigger_sync_in_backward(model: torch.nn.Module) -> Iterator[None]:
        """Force the next backward of a DDP model to synchronize, even inside ``no_sync``.

        Example:
            >>> with accelerator.trigger_sync_in_backward(model):  # doctest: +SKIP
            ...     accelerator.backward(loss)
        """
        from torch.nn.parallel import DistributedDataParallel

        if not isinstance(model, DistributedDataParallel):
            yield
            return
        saved = (model.require_backward_grad_sync, model.require_forward_param_sync)
        model.require_backward_grad_sync = True
        model.require_forward_param_sync = True
        model.reducer.prepare_for_backward([])
        try:
            yield
        finally:
            model.require_backward_grad_sync, model.require_forward_param_sync = saved

    def unscale_gradients(self, optimizer: Any = None) -> None:
        """Divide fp16 gradients by the loss scale (before clipping or inspecting them).

        Example:
            >>> accelerator.unscale_gradients()  # doctest: +SKIP
        """
        if self.scaler is None or not self.sync_gradients:
            return
        targets = self._optimizers if optimizer is None else optimizer
        if not isinstance(targets, (list, tuple)):
            targets = [targets]
        for opt in targets:
            inner = opt.optimizer if isinstance(opt, AcceleratedOptimizer) else opt
            self.scaler.unscale_(inner)

    def clip_grad_norm_(
        self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2
    ) -> torch.Tensor:
        """Clip the gradients' total norm to ``max_norm`` (unscaling fp16 first); returns the norm.

        Example:
            >>> norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)  # doctest: +SKIP
        """
        self.unscale_gradients()
        return self.strategy.clip_grad_norm_(parameters, max_norm, norm_type=norm_type)

    def clip_grad_value_(self, parameters: Iterable[torch.nn.Parameter], clip_value: float) -> None:
        """Clip every gradient element to ``[-clip_value, clip_value]`` (unscaling fp16 first).

        Example:
            >>> accelerator.clip_grad_value_(model.parameters(), 0.5)  # doctest: +SKIP
        """
        self.unscale_gradients()
        torch.nn.utils.clip_grad_value_(parameters, clip_value)

    def autocast(self, autocast_handler: Any = None) -> contextlib.AbstractContextManager[Any]:
        """Autocast for the configured mixed precision (a no-op without one).

        Example:
            >>> with accelerator.autocast():  # doctest: +SKIP
            ...     loss = loss_fn(model(x), y)
        """
        handler = autocast_handler if autocast_handler is not None else self.autocast_handler
        return autocast_context(self.mixed_precision, self.device, handler)
