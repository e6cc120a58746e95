"""What ``prepare`` hands back under DeepSpeed besides the engine: an optimizer and a scheduler
whose ``step`` is the engine's.

A DeepSpeed engine does the optimizer step, gradient clipping, zeroing and the scheduler step
in one call (``engine.step()``). accel runs that call at the first of
``accelerator.clip_grad_norm_`` (which must know the norm) or ``optimizer.step()`` on a step
that synchronizes gradients; ``optimizer.zero_grad()`` and ``scheduler.step()`` have nothing
left to do.
"""

from __future__ import annotations

from typing import Any

import torch

from accel.core.optimizer import AcceleratedOptimizer
from accel.core.scheduler import AcceleratedScheduler


class DeepSpeedEngineWrapper:
    """One engine and the state of its current step (Accelerate's name for this object).

    ``backward`` tells the engine whether this micro-batch ends an accumulation group, then
    runs its backward; ``step`` runs the engine's step once per group.

    Example:
        >>> wrapped = DeepSpeedEngineWrapper(engine)  # doctest: +SKIP
        >>> wrapped.backward(loss, sync_gradients=True); wrapped.step()  # doctest: +SKIP
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.step_pending = False

    def backward(self, loss: torch.Tensor, sync_gradients: bool = True, **kwargs: Any) -> None:
        """Backward through the engine (it scales the loss for accumulation).

        Example:
            >>> wrapped.backward(loss, sync_gradients=False)  # doctest: +SKIP
        """
        self.engine.set_gradient_accumulation_boundary(sync_gradients)
        self.engine.backward(loss, **kwargs)
        if sync_gradients:
            self.step_pending = True

    def step(self) -> None:
        """Run the engine's step (clip, optimizer, zero grads, scheduler) if one is due.

        Example:
            >>> wrapped.step()  # doctest: +SKIP
        """
        if self.step_pending:
            self.step_pending = False
            self.engine.step()

    def set_gradient_clipping(self, max_norm: float) -> None:
        """Clip the total gradient norm to ``max_norm`` in this and later steps.

        Example:
            >>> wrapped.set_gradient_clipping(1.0)  # doctest: +SKIP
        """
        engine = self.engine
        if float(engine.gradient_clipping()) == float(max_norm):
            return
        engine._config.gradient_clipping = float(max_norm)
        if hasattr(engine.optimizer, "clip_grad"):
            engine.optimizer.clip_grad = float(max_norm)

    def get_global_grad_norm(self) -> float | None:
        """The total gradient norm the engine computed in its last step.

        Example:
            >>> wrapped.get_global_grad_norm()  # doctest: +SKIP
            0.73
        """
        norm = self.engine.get_global_grad_norm()
        return (
            float(norm.item() if isinstance(norm, torch.Tensor) else norm)
            if norm is not None
            else None
        )


class DeepSpeedOptimizerWrapper(AcceleratedOptimizer):
    """The engine's optimizer as ``prepare`` returns it: ``step`` runs the engine's step.

    ``param_groups`` (learning rates), ``state_dict`` and the rest are the DeepSpeed
    optimizer's. ``step_was_skipped`` is true after an fp16 overflow.

    Example:
        >>> model, optimizer = accelerator.prepare(model, optimizer)  # doctest: +SKIP
        >>> accelerator.backward(loss); optimizer.step(); optimizer.zero_grad()  # doctest: +SKIP
    """

    # The groups hold DeepSpeed's flat fp32 partitions, not the model's parameters.
    holds_model_parameters = False

    def __init__(self, optimizer: Any, engine: DeepSpeedEngineWrapper) -> None:
        super().__init__(optimizer, device_placement=False, scaler=None)
        self.engine_wrapper = engine

    def step(self, closure: Any = None) -> None:
        """Run the engine's step if this step synchronizes gradients (``closure`` is refused).

        Example:
            >>> optimizer.step()  # doctest: +SKIP
        """
        if closure is not None:
            raise ValueError(
                "optimizer.step(closure) is not supported under DeepSpeed: the engine steps "
                "without re-evaluating the loss; call optimizer.step() without a closure"
            )
        if self.gradient_state.sync_gradients:
            self.engine_wrapper.step()

    def zero_grad(self, set_to_none: bool | None = None) -> None:
        """Nothing to do: the engine clears gradients in its step.

        Example:
            >>> optimizer.zero_grad()  # doctest: +SKIP
        """

    @property
    def step_was_skipped(self) -> bool:
        """Whether the engine's last step was skipped (fp16 overflow).

        Example:
            >>> optimizer.step_was_skipped  # doctest: +SKIP
            False
        """
        engine = self.engine_wrapper.engine
        return engine.global_steps > 0 and not engine.was_step_applied()

    def __repr__(self) -> str:
        return f"DeepSpeedOptimizerWrapper({type(self.optimizer).__name__})"


class DeepSpeedSchedulerWrapper(AcceleratedScheduler):
    """The engine's learning-rate scheduler as ``prepare`` returns it.

    The engine steps it once per optimizer step (as in Accelerate: not once per process, and
    not after an fp16 overflow), so ``step`` does nothing; reading (``get_last_lr``,
    ``state_dict``) works as usual.

    Example:
        >>> model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)  # doctest: +SKIP
        >>> scheduler.get_last_lr()  # doctest: +SKIP
    """

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: the engine steps the scheduler in its own step.

        Example:
            >>> scheduler.step()  # doctest: +SKIP
        """
