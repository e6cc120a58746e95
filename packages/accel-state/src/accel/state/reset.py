"""Starting the shared state over: for tests, notebooks and scripts that run several jobs."""

from __future__ import annotations

from accel.state.accelerator_state import AcceleratorState
from accel.state.gradient_state import GradientState
from accel.state.partial_state import PartialState


def reset_state(destroy_process_group: bool = False) -> None:
    """Forget ``PartialState``, ``AcceleratorState`` and ``GradientState``.

    The next ``PartialState()`` or ``Accelerator()`` sets everything up again from the
    environment. The process group is kept (and adopted by the next state) unless
    ``destroy_process_group`` is true.

    Example:
        >>> from accel.state import PartialState, reset_state
        >>> PartialState().initialized
        True
        >>> reset_state()
        >>> PartialState._shared_state
        {}
    """
    if destroy_process_group and PartialState._shared_state:
        PartialState().destroy_process_group()
    elif destroy_process_group:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    GradientState._reset_state()
    AcceleratorState._reset_state(reset_partial_state=True)
