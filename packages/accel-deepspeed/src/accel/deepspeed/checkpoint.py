"""``save_state``/``load_state`` under DeepSpeed: the engines write their own checkpoints.

Layout (Accelerate's): each engine saves into ``<folder>/pytorch_model`` (the second engine
into ``pytorch_model_1``, ...) with ``engine.save_checkpoint`` (model, ZeRO-partitioned
optimizer states, its scheduler; one optimizer file per process), and ``<folder>/latest``
names the tag. accel adds the usual ``random_states_{rank}.pkl`` (with the dataloaders'
positions), schedulers DeepSpeed does not own, and objects registered with
``register_for_checkpointing``. ``save_state`` keeps its crash-safe frame around all of it.

DeepSpeed reads its own files with ``torch.load``; unlike accel's other checkpoints, they are
not restricted to plain tensors, so load DeepSpeed checkpoints only from sources you trust.
"""

from __future__ import annotations

import os
from typing import Any

from accel.core.checkpoint.contents import collect_checkpoint_files
from accel.core.checkpoint.context import CheckpointContext, StateDictHooks
from accel.core.checkpoint.hooks import run_load_pre_hooks, run_save_pre_hooks
from accel.core.checkpoint.loading import read_checkpoint_files
from accel.core.checkpoint.writer import write_files
from accel.deepspeed.wrappers import (
    DeepSpeedEngineWrapper,
    DeepSpeedOptimizerWrapper,
    DeepSpeedSchedulerWrapper,
)

MODEL_TAG = "pytorch_model"


def engine_tag(index: int) -> str:
    """The checkpoint sub-folder of the ``index``-th engine (Accelerate's names).

    Example:
        >>> engine_tag(0), engine_tag(1)
        ('pytorch_model', 'pytorch_model_1')
    """
    return MODEL_TAG if index == 0 else f"{MODEL_TAG}_{index}"


def _others(context: CheckpointContext) -> tuple[list[Any], list[Any]]:
    optimizers = [o for o in context.optimizers if not isinstance(o, DeepSpeedOptimizerWrapper)]
    schedulers = [s for s in context.schedulers if not isinstance(s, DeepSpeedSchedulerWrapper)]
    return optimizers, schedulers


def save_deepspeed_checkpoint(
    folder: str,
    context: CheckpointContext,
    hooks: StateDictHooks,
    engines: list[DeepSpeedEngineWrapper],
    safe_serialization: bool = True,
    **engine_kwargs: Any,
) -> None:
    """Write every engine's DeepSpeed checkpoint and accel's own files of ``context`` into
    ``folder`` (every process calls this); ``engine_kwargs`` (``client_state``,
    ``exclude_frozen_parameters``, ...) go to each ``engine.save_checkpoint``.

    Example:
        >>> save_deepspeed_checkpoint("ckpt/.tmp", context, strategy, strategy.engines())  # doctest: +SKIP
    """
    run_save_pre_hooks(context, [], folder)
    for index, wrapper in enumerate(engines):
        wrapper.engine.save_checkpoint(folder, tag=engine_tag(index), **engine_kwargs)
    optimizers, schedulers = _others(context)
    files = collect_checkpoint_files(
        context, hooks, [], safe_serialization, optimizers=optimizers, schedulers=schedulers
    )
    write_files(os.fspath(folder), files)


def load_deepspeed_checkpoint(
    folder: str,
    context: CheckpointContext,
    hooks: StateDictHooks,
    engines: list[DeepSpeedEngineWrapper],
    load_kwargs: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> None:
    """Load what :func:`save_deepspeed_checkpoint` wrote (``strict=False`` is passed on to
    DeepSpeed as ``load_module_strict``).

    Example:
        >>> load_deepspeed_checkpoint("ckpt", context, strategy, strategy.engines())  # doctest: +SKIP
    """
    strict = bool(model_kwargs.pop("strict", True))
    if model_kwargs:
        raise TypeError(
            f"load_state under DeepSpeed accepts only strict=... for the models, got "
            f"{sorted(model_kwargs)}"
        )
    to_load = run_load_pre_hooks(context, folder)
    for index, wrapper in enumerate(engines):
        engine = wrapper.engine
        if not any(engine is model for model in to_load):
            continue
        tag = engine_tag(index)
        if not os.path.isdir(os.path.join(folder, tag)):
            raise FileNotFoundError(
                f"checkpoint {folder!r} has no DeepSpeed checkpoint {tag!r} for engine {index}: "
                "it was saved with fewer models, or not under DeepSpeed"
            )
        loaded, _ = engine.load_checkpoint(folder, tag=tag, load_module_strict=strict)
        if loaded is None:
            raise FileNotFoundError(f"DeepSpeed could not load {os.path.join(folder, tag)!r}")
    optimizers, schedulers = _others(context)
    read_checkpoint_files(
        context, hooks, folder, [], load_kwargs, optimizers=optimizers, schedulers=schedulers
    )
