"""What the ``Accelerator``'s mixins read from one another, declared once for type checkers.

``Accelerator`` is assembled from mixins by concern (the view of the job, preparation,
process control, the training step, tracking, checkpoints); each uses attributes and methods another part defines.
:class:`AcceleratorParts` declares them (annotations only: nothing is set here), so each
mixin module type-checks on its own without importing ``accelerator.py``.

Example:
    >>> from accel.core.accelerator_parts import AcceleratorParts
    >>> "device" in AcceleratorParts.__annotations__
    True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class AcceleratorParts:
    """Annotations of the ``Accelerator`` attributes its mixins share (see the module doc).

    Example:
        >>> from accel.core import Accelerator
        >>> issubclass(Accelerator, AcceleratorParts)
        True
    """

    # the job and its processes
    state: Any
    gradient_state: Any
    device: Any
    distributed_type: Any
    num_processes: int
    process_index: int
    is_main_process: bool
    is_local_main_process: bool
    use_distributed: bool
    multi_device: bool
    parallelism_config: Any
    torch_device_mesh: Any
    # configuration (set by Accelerator.__init__)
    dataloader_config: Any
    device_placement: bool
    step_scheduler_with_optimizer: bool
    rng_types: list[str]
    native_amp: bool
    split_batches: bool
    # kwargs handlers (None when not given)
    ddp_handler: Any
    scaler_handler: Any
    init_handler: Any
    autocast_handler: Any
    fp8_recipe_handler: Any
    # the training step
    strategy: Any
    scaler: Any
    mixed_precision: str
    step: int
    gradient_accumulation_steps: int
    sync_gradients: bool
    # prepared objects and checkpoints
    project_configuration: Any
    _models: list[Any]
    _optimizers: list[Any]
    _schedulers: list[Any]
    _dataloaders: list[Any]
    _custom_objects: list[Any]
    _checkpoint_writer: Any
    _save_model_state_pre_hook: OrderedDict[int, Callable[..., None]]
    _load_model_state_pre_hook: OrderedDict[int, Callable[..., None]]
    # tracking
    log_with: list[Any]
    logging_dir: Any
    unwrap_model: Callable[..., Any]
    get_state_dict: Callable[..., Any]
    wait_for_checkpoint: Callable[..., Any]
