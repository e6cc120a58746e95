"""Placeholders for an optimizer and a scheduler that the DeepSpeed config defines.

When the DeepSpeed config has an ``optimizer`` (or ``scheduler``) section, DeepSpeed builds it;
the script passes a :class:`DummyOptim` (or :class:`DummyScheduler`) to ``prepare`` instead, and
its hyper-parameters fill the section's ``"auto"`` values. ``prepare`` returns the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_UNSET: Any = object()


def _given(**values: Any) -> frozenset[str]:
    return frozenset(name for name, value in values.items() if value is not _UNSET)


class DummyOptim:
    """Stands for the optimizer of the DeepSpeed config's ``optimizer`` section.

    ``lr`` and ``weight_decay`` (and other keyword arguments such as ``betas``, ``eps``) fill
    the section's ``"auto"`` parameters. Values passed explicitly must agree with concrete
    values in the config (``prepare`` names both otherwise); the defaults (``lr=0.001``,
    ``weight_decay=0``) only fill ``"auto"``, so ``DummyOptim(params)`` (what transformers'
    Trainer passes) takes the config's numbers. ``given`` lists the explicit ones.

    Example:
        >>> import torch
        >>> from accel.deepspeed import DummyOptim
        >>> model = torch.nn.Linear(2, 2)
        >>> optimizer = DummyOptim(model.parameters(), lr=3e-4)
        >>> optimizer.lr
        0.0003
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = _UNSET,
        weight_decay: float = _UNSET,
        **kwargs: Any,
    ) -> None:
        self.params = list(params)
        self.given = _given(lr=lr, weight_decay=weight_decay) | frozenset(kwargs)
        self.lr: float = 0.001 if lr is _UNSET else lr
        self.weight_decay: float = 0 if weight_decay is _UNSET else weight_decay
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return (
            f"DummyOptim(lr={self.lr}, weight_decay={self.weight_decay}, {len(self.params)} params)"
        )


class DummyScheduler:
    """Stands for the scheduler of the DeepSpeed config's ``scheduler`` section.

    ``total_num_steps`` and ``warmup_num_steps`` fill the section's ``"auto"`` values (the
    default ``warmup_num_steps=0`` only fills ``"auto"``; see :class:`DummyOptim`). Without
    a ``scheduler`` section, ``lr_scheduler_callable(optimizer)`` builds the scheduler once
    DeepSpeed has built the optimizer.

    Example:
        >>> from accel.deepspeed import DummyOptim, DummyScheduler
        >>> optimizer = DummyOptim([], lr=1e-3)
        >>> scheduler = DummyScheduler(optimizer, total_num_steps=1000, warmup_num_steps=100)
        >>> scheduler.warmup_num_steps
        100
    """

    def __init__(
        self,
        optimizer: Any,
        total_num_steps: int | None = None,
        warmup_num_steps: int = _UNSET,
        lr_scheduler_callable: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.optimizer = optimizer
        self.given = _given(warmup_num_steps=warmup_num_steps) | frozenset(kwargs)
        if total_num_steps is not None:
            self.given |= {"total_num_steps"}
        self.total_num_steps = total_num_steps
        self.warmup_num_steps: int = 0 if warmup_num_steps is _UNSET else warmup_num_steps
        self.lr_scheduler_callable = lr_scheduler_callable
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return (
            f"DummyScheduler(total_num_steps={self.total_num_steps}, "
            f"warmup_num_steps={self.warmup_num_steps})"
        )
