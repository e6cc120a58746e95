"""Which files one process contributes to a training checkpoint, in Accelerate's layout.

Example:
    >>> [f.name for f in collect_checkpoint_files(accelerator, [model.state_dict()])]  # doctest: +SKIP
    ['model.safetensors', 'optimizer.bin', 'random_states_0.pkl']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from accel.core.checkpoint.gradients import gradients_file
from accel.core.checkpoint.layout import (
    CUSTOM_NAME,
    MODEL_NAME,
    OPTIMIZER_NAME,
    RNG_STATE_NAME,
    SAFE_MODEL_NAME,
    SCALER_NAME,
    SCHEDULER_NAME,
    PathLike,
    numbered,
)
from accel.core.checkpoint.rng import rng_states
from accel.core.checkpoint.writer import CheckpointFile, write_files

if TYPE_CHECKING:
    from accel.core.accelerator import Accelerator

__all__ = ["collect_checkpoint_files", "write_checkpoint_files"]


def collect_checkpoint_files(
    accelerator: Accelerator,
    weights: list[Mapping[str, torch.Tensor]],
    safe_serialization: bool = True,
    optimizers: list[Any] | None = None,
    schedulers: list[Any] | None = None,
) -> list[CheckpointFile]:
    """The files this process contributes to a checkpoint, not yet written.

    The main process (each node's main process with ``save_on_each_node``) contributes
    weights, optimizers, schedulers, scaler and custom objects; every process contributes its
    own ``random_states_{rank}.pkl``. Payloads reference the live state (nothing is copied).
    ``optimizers``/``schedulers`` default to the accelerator's; a strategy that saves some
    itself (DeepSpeed) passes the others.

    Example:
        >>> [f.name for f in collect_checkpoint_files(accelerator, [model.state_dict()])]  # doctest: +SKIP
        ['model.safetensors', 'optimizer.bin', 'random_states_0.pkl']
    """
    config = accelerator.project_configuration
    writer = (
        accelerator.is_local_main_process
        if config.save_on_each_node
        else accelerator.is_main_process
    )
    optimizers = accelerator._optimizers if optimizers is None else optimizers
    schedulers = accelerator._schedulers if schedulers is None else schedulers
    # Every process asks: a sharded strategy gathers optimizer states collectively.
    optimizer_states = [accelerator.strategy.optimizer_state_dict(opt) for opt in optimizers]
    files: list[CheckpointFile] = []
    if writer:
        for i, state in enumerate(weights):
            if safe_serialization:
                name = numbered(SAFE_MODEL_NAME, i, ".safetensors")
                files.append(CheckpointFile(name, state, "safetensors"))
            else:
                files.append(CheckpointFile(numbered(MODEL_NAME, i, ".bin"), dict(state)))
        for i, state in enumerate(optimizer_states):
            files.append(CheckpointFile(numbered(OPTIMIZER_NAME, i, ".bin"), state))
        for i, sched in enumerate(schedulers):
            files.append(CheckpointFile(numbered(SCHEDULER_NAME, i, ".bin"), sched.state_dict()))
        if accelerator.scaler is not None:
            files.append(CheckpointFile(SCALER_NAME, accelerator.scaler.state_dict()))
        for i, obj in enumerate(accelerator._custom_objects):
            files.append(CheckpointFile(f"{CUSTOM_NAME}_{i}.pkl", obj.state_dict()))
    rank = accelerator.process_index
    files.append(
        CheckpointFile(
            f"{RNG_STATE_NAME}_{rank}.pkl", rng_states(accelerator.step, accelerator._dataloaders)
        )
    )
    gradients = gradients_file(accelerator)  # only inside a gradient accumulation window
    if gradients is not None:
        files.append(gradients)
    return files


def write_checkpoint_files(
    accelerator: Accelerator,
    output_dir: PathLike,
    weights: list[Mapping[str, torch.Tensor]],
    safe_serialization: bool = True,
) -> None:
    """Write the files of one checkpoint into ``output_dir`` (an existing folder), each one
    flushed to disk, several at a time.

    See :func:`collect_checkpoint_files` for which process writes what.
    :meth:`Accelerator.save_state` calls this on a temporary folder and handles renaming and
    pruning.

    Example:
        >>> write_checkpoint_files(accelerator, "tmp_dir", [model.state_dict()])  # doctest: +SKIP
    """
    files = collect_checkpoint_files(accelerator, weights, safe_serialization)
    write_files(os.fspath(output_dir), files)
