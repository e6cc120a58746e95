"""``AcceleratedOptimizer``: an optimizer that steps only when gradients are complete."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from accel.ops import send_to_device
from accel.state import GradientState


class AcceleratedOptimizer(torch.optim.Optimizer):
    """Wraps an optimizer for gradient accumulation and mixed precision.

    ``step`` and ``zero_grad`` do nothing on accumulation steps (``sync_gradients`` false).
    With an fp16 ``GradScaler`` the step goes through the scaler and is skipped when the
    gradients overflowed; ``step_was_skipped`` tells. Everything else (``param_groups``,
    ``state``, ``state_dict``...) is the wrapped optimizer's.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = AcceleratedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1))
        >>> optimizer.step_was_skipped
        False
    """

    # False for wrappers whose param groups hold copies of the model's parameters (DeepSpeed's
    # flat partitions), so prepare() does not check them against the models.
    holds_model_parameters = True

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        device_placement: bool = True,
        scaler: Any = None,
        device: torch.device | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.scaler = scaler
        self.gradient_state = GradientState()
        self.device_placement = device_placement
        self._is_overflow = False
        self._stepped = False
        if device_placement and device is not None and optimizer.state:
            moved = send_to_device(optimizer.state_dict(), device)
            optimizer.load_state_dict(moved)

    @property
    def state(self) -> Any:  # type: ignore[override]
        """The wrapped optimizer's per-parameter state.

        Example:
            >>> AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)])).state
            defaultdict(<class 'dict'>, {})
        """
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The wrapped optimizer's parameter groups.

        Example:
            >>> opt = AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5))
            >>> opt.param_groups[0]["lr"]
            0.5
        """
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped optimizer's defaults.

        Example:
            >>> AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)).defaults["lr"]
            0.5
        """
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer.

        Example:
            >>> opt = AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
            >>> opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)]})
        """
        self.optimizer.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict.

        Example:
            >>> sorted(AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)).state_dict())
            ['param_groups', 'state']
        """
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict into the wrapped optimizer.

        Example:
            >>> opt = AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
            >>> opt.load_state_dict(opt.state_dict())
        """
        self.optimizer.load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool | None = None) -> None:
        """Clear gradients, except on accumulation steps.

        Example:
            >>> AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)).zero_grad()
        """
        if not self.gradient_state.sync_gradients:
            return
        if self._accepts_set_to_none():
            self.optimizer.zero_grad(set_to_none=True if set_to_none is None else set_to_none)
        elif set_to_none is not None:
            raise ValueError(
                f"{type(self.optimizer).__name__}.zero_grad does not accept set_to_none; call "
                "zero_grad() without it"
            )
        else:
            self.optimizer.zero_grad()

    def _accepts_set_to_none(self) -> bool:
        """Whether the wrapped ``zero_grad`` takes ``set_to_none`` (cached per function).

        ``inspect.signature`` costs tens of µs, too much for every step, so the answer is kept
        for the function behind ``zero_grad`` and recomputed only if that function changes.
        """
        method = self.optimizer.zero_grad
        function = getattr(method, "__func__", method)
        cached = self.__dict__.get("_zero_grad_signature")
        if cached is None or cached[0] is not function:
            accepts = "set_to_none" in inspect.signature(method).parameters
            cached = self._zero_grad_signature = (function, accepts)
        return cached[1]

    def step(self, closure: Any = None) -> Any:
        """Step the wrapped optimizer if gradients are synchronized (through the scaler in fp16).

        Example:
            >>> p = torch.ones(1, requires_grad=True)
            >>> opt = AcceleratedOptimizer(torch.optim.SGD([p], lr=1.0))
            >>> p.grad = torch.ones(1)
            >>> opt.step(); p.item()
            0.0
        """
        if not self.gradient_state.sync_gradients:
            return None
        if self.scaler is None:
            return self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        original = self.optimizer.step
        patched_before = "step" in vars(self.optimizer)
        self._stepped = False

        def flagged_step(*args: Any, **kwargs: Any) -> Any:
            self._stepped = True
            return original(*args, **kwargs)

        self.optimizer.step = flagged_step  # type: ignore[method-assign]
        try:
            result = (
                self.scaler.step(self.optimizer, closure)
                if closure
                else self.scaler.step(self.optimizer)
            )
            self.scaler.update()
        finally:
            if patched_before:
                self.optimizer.step = original  # type: ignore[method-assign]
            else:
                del self.optimizer.step
        self._is_overflow = not self._stepped
        return result

    def train(self) -> None:
        """Put optimizers with train/eval modes (e.g. schedule-free) in train mode.

        Example:
            >>> AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)).train()
        """
        train = getattr(self.optimizer, "train", None)
        if callable(train):
            train()

    def eval(self) -> None:
        """Put optimizers with train/eval modes (e.g. schedule-free) in eval mode.

        Example:
            >>> AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)).eval()
        """
        evaluate = getattr(self.optimizer, "eval", None)
        if callable(evaluate):
            evaluate()

    @property
    def step_was_skipped(self) -> bool:
        """Whether the last step was skipped because fp16 gradients overflowed.

        Example:
            >>> AcceleratedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)).step_was_skipped
            False
        """
        return self._is_overflow

    def _switch_parameters(self, mapping: dict[torch.nn.Parameter, torch.nn.Parameter]) -> None:
        for group in self.optimizer.param_groups:
            group["params"] = [mapping.get(p, p) for p in group["params"]]

    def __repr__(self) -> str:
        return f"AcceleratedOptimizer({self.optimizer!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_zero_grad_signature", None)  # a cache, and it holds a function
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
