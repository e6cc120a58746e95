"""Prepared dataloaders on XLA: one step mark per training step, not one per micro-step.

torch-xla traces operations lazily and runs them when a step is marked. Its ``MpDeviceLoader``
marks a step before every batch and moves batches in a background thread; accel's prepared
dataloaders already move each batch to the device while reading the next one ahead, and
their bookkeeping (``end_of_dataloader``, the remainder, the resume position) must run on the
training loop's thread, in step with the batches the loop sees. So accel keeps its prepared
dataloader and only adds the step mark: after the loop is done with a batch, the step is
marked unless the loop is inside a gradient-accumulation window (``sync_gradients`` false),
so the micro-steps of one optimizer step trace into one graph. The same object is changed in
place (its class gains the step mark), so ``isinstance`` checks and checkpoint positions keep
working.

Example:
    >>> loader = mark_steps_per_batch(accelerator.prepare_data_loader(loader))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from accel.state import GradientState
from accel.xla.runtime import mark_step


class XLAStepMarking:
    """Mixin for a prepared dataloader class: marks an XLA step after each training step.

    Example:
        >>> type(mark_steps_per_batch(loader)).__mro__[1] is XLAStepMarking  # doctest: +SKIP
        True
    """

    def __iter__(self) -> Iterator[Any]:
        state = GradientState()
        for batch in super().__iter__():  # type: ignore[misc]
            yield batch
            if state.sync_gradients:
                mark_step()


@functools.cache
def _marking_class(base: type) -> type:
    if issubclass(base, XLAStepMarking):
        return base
    return type(f"XLA{base.__name__}", (XLAStepMarking, base), {"__module__": __name__})


def mark_steps_per_batch(dataloader: Any) -> Any:
    """Give a prepared dataloader XLA's per-step mark (in place); returns it.

    Example:
        >>> loader = mark_steps_per_batch(loader)  # doctest: +SKIP
    """
    dataloader.__class__ = _marking_class(type(dataloader))
    return dataloader
