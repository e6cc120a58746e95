"""``XLAOptimizer``: the prepared optimizer's step with XLA's gradient reduction and step mark."""

from __future__ import annotations

from typing import Any

import torch

from accel.core.optimizer import AcceleratedOptimizer
from accel.ops import send_to_device
from accel.xla.runtime import load_torch_xla, mark_step


def reduce_gradients(optimizer: AcceleratedOptimizer) -> None:
    """Average the gradients of ``optimizer``'s parameters over the XLA processes, once.

    Uses XLA's all-reduce (``xm.reduce_gradients``, a no-op with one process) and records in
    ``GradientState.is_xla_gradients_synced`` that it was done, so that clipping before the
    step and the step itself reduce only once.

    Example:
        >>> reduce_gradients(optimizer)  # doctest: +SKIP
    """
    state = optimizer.gradient_state
    if state.is_xla_gradients_synced:
        return
    xm = load_torch_xla()
    xm.reduce_gradients(optimizer.optimizer)
    state.is_xla_gradients_synced = True


class XLAOptimizer(AcceleratedOptimizer):
    """An ``AcceleratedOptimizer`` for XLA devices.

    On a synchronizing step it reduces the gradients across processes, steps, then marks the
    step (``torch_xla.sync()``), so the traced graph of a whole optimizer step (every
    accumulated micro-step included) runs as one XLA graph, compiled once. ``state_dict``
    returns CPU tensors, so checkpoints load without torch-xla.

    Example:
        >>> optimizer = XLAOptimizer.from_prepared(accelerated_optimizer)  # doctest: +SKIP
    """

    @classmethod
    def from_prepared(cls, optimizer: AcceleratedOptimizer) -> XLAOptimizer:
        """The same prepared optimizer (same wrapped optimizer and settings) as an XLAOptimizer.

        Example:
            >>> XLAOptimizer.from_prepared(accelerated_optimizer)  # doctest: +SKIP
        """
        converted = cls.__new__(cls)
        converted.__dict__.update(optimizer.__dict__)
        return converted

    def step(self, closure: Any = None) -> Any:
        """Reduce gradients, step, mark the step; nothing on accumulation steps.

        Example:
            >>> optimizer.step()  # doctest: +SKIP
        """
        if not self.gradient_state.sync_gradients:
            return None
        reduce_gradients(self)
        try:
            result = super().step(closure)
        finally:
            self.gradient_state.is_xla_gradients_synced = False
        mark_step()
        return result

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict with every tensor copied to the CPU.

        Example:
            >>> optimizer.state_dict()["state"][0]["momentum_buffer"].device  # doctest: +SKIP
            device(type='cpu')
        """
        return send_to_device(super().state_dict(), torch.device("cpu"))
