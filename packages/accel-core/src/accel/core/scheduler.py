"""``AcceleratedScheduler``: a learning-rate scheduler that follows the optimizer's real steps."""

from __future__ import annotations

from typing import Any

from accel.state import GradientState, PartialState


class AcceleratedScheduler:
    """Steps the wrapped scheduler only when the optimizers really stepped.

    On accumulation steps it does not step (with ``adjust_scheduler`` it only advances the
    step count); after an fp16 overflow it does not step. Without ``split_batches`` each
    process saw one batch per step, so the job consumed ``num_processes`` batches: the
    scheduler steps that many times, which keeps a schedule written for one process valid.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = AcceleratedScheduler(torch.optim.lr_scheduler.StepLR(opt, 1, 0.5), [])
        >>> sched.step(); sched.get_last_lr()
        [0.5]
    """

    def __init__(
        self,
        scheduler: Any,
        optimizers: Any,
        step_with_optimizer: bool = True,
        split_batches: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.optimizers = (
            list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
        )
        self.split_batches = split_batches
        self.step_with_optimizer = step_with_optimizer
        self.gradient_state = GradientState()

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Advance the schedule by the number of batches the job consumed this step.

        Example:
            >>> sched.step()  # doctest: +SKIP
        """
        if not self.step_with_optimizer:
            self.scheduler.step(*args, **kwargs)
            return
        if not self.gradient_state.sync_gradients:
            if self.gradient_state.adjust_scheduler:
                self.scheduler._step_count += 1
            return
        if any(getattr(opt, "step_was_skipped", False) for opt in self.optimizers):
            return
        repeats = 1 if self.split_batches else PartialState().num_processes
        total = getattr(self.scheduler, "total_steps", None)
        for _ in range(repeats):
            if total is not None and self.scheduler._step_count > total:
                break
            self.scheduler.step(*args, **kwargs)

    def get_last_lr(self) -> list[float]:
        """The wrapped scheduler's last learning rates.

        Example:
            >>> sched.get_last_lr()  # doctest: +SKIP
        """
        return self.scheduler.get_last_lr()

    def get_lr(self) -> Any:
        """The wrapped scheduler's ``get_lr()``.

        Example:
            >>> sched.get_lr()  # doctest: +SKIP
        """
        return self.scheduler.get_lr()

    def state_dict(self) -> dict[str, Any]:
        """The wrapped scheduler's state dict.

        Example:
            >>> sched.state_dict()  # doctest: +SKIP
        """
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict into the wrapped scheduler.

        Example:
            >>> sched.load_state_dict(sched.state_dict())  # doctest: +SKIP
        """
        self.scheduler.load_state_dict(state_dict)

    def print_lr(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped scheduler's ``print_lr``.

        Example:
            >>> sched.print_lr(True, 0, 0.1)  # doctest: +SKIP
        """
        return self.scheduler.print_lr(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "scheduler":
            raise AttributeError(name)
        return getattr(self.scheduler, name)
