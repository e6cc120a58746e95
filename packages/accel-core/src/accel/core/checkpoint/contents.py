"""Which files one process contributes to a training checkpoint, in Accelerate's layout.

Example:
    >>> from accel.core.strategies import TrainingStrategy
    >>> model = torch.nn.Linear(1, 1)
    >>> files = collect_checkpoint_files(
    ...     CheckpointContext(models=[model]), TrainingStrategy(None), [model.state_dict()]
    ... )
    >>> [f.name for f in files]
    ['model.safetensors', 'random_states_0.pkl']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from accel.core.checkpoint.context import CheckpointContext, StateDictHooks
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

__all__ = ["collect_checkpoint_files", "write_checkpoint_files"]


def collect_checkpoint_files(
    context: CheckpointContext,
    hooks: StateDictHooks,
    weights: list[Mapping[str, torch.Tensor]],
    safe_serialization: bool = True,
    optimizers: list[Any] | None = None,
    schedulers: list[Any] | None = None,
) -> list[CheckpointFile]:
    """The files this process contributes to a checkpoint, not yet written.

    The process with ``context.writes_shared_files`` contributes weights, optimizers,
    schedulers, scaler and custom objects; every process contributes its own
    ``random_states_{rank}.pkl`` (and its accumulated gradients inside an accumulation
    window, when ``hooks.gradients_on_parameters``). Payloads reference the live state
    (nothing is copied). Optimizer states come from ``hooks.optimizer_state_dict`` (called on
    every process: sharded strategies gather). ``optimizers``/``schedulers`` default to the
    context's; a strategy that saves some itself (DeepSpeed) passes the others.

    Example:
        >>> files = collect_checkpoint_files(context, strategy, [weights])  # doctest: +SKIP
    """
    optimizers = context.optimizers if optimizers is None else optimizers
    schedulers = context.schedulers if schedulers is None else schedulers
    # Every process asks: a sharded strategy gathers optimizer states collectively.
    optimizer_states = [hooks.optimizer_state_dict(opt) for opt in optimizers]
    files: list[CheckpointFile] = []
    if context.writes_shared_files:
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
        if context.scaler is not None:
            files.append(CheckpointFile(SCALER_NAME, context.scaler.state_dict()))
        for i, obj in enumerate(context.custom_objects):
            files.append(CheckpointFile(f"{CUSTOM_NAME}_{i}.pkl", obj.state_dict()))
    rng_name = f"{RNG_STATE_NAME}_{context.process_index}.pkl"
    files.append(CheckpointFile(rng_name, rng_states(context.step, context.dataloaders)))
    if hooks.gradients_on_parameters:
        gradients = gradients_file(context)  # only inside a gradient accumulation window
        if gradients is not None:
            files.append(gradients)
    return files


def write_checkpoint_files(
    context: CheckpointContext,
    hooks: StateDictHooks,
    output_dir: PathLike,
    weights: list[Mapping[str, torch.Tensor]],
    safe_serialization: bool = True,
) -> None:
    """Write the files of one checkpoint into ``output_dir`` (an existing folder), each one
    flushed to disk, several at a time.

    See :func:`collect_checkpoint_files` for which process writes what.
    :meth:`Accelerator.save_state` writes into a temporary folder and handles renaming and
    pruning.

    Example:
        >>> write_checkpoint_files(context, strategy, "tmp_dir", [weights])  # doctest: +SKIP
    """
    files = collect_checkpoint_files(context, hooks, weights, safe_serialization)
    write_files(os.fspath(output_dir), files)
