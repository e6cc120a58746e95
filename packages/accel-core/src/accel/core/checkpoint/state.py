"""Training checkpoints: ``Accelerator.save_state`` / ``load_state`` and what they rely on.

The folder layout is described in :mod:`accel.core.checkpoint.layout`.

What accel adds:

- *Crash safety.* Everything is written into a hidden sibling folder
  (``.checkpoint_3.partial``), flushed to disk, then renamed into place by the main process after
  every process has finished; the marker is written last. ``load_state()`` without a path picks
  the newest folder that has the marker, and ``total_limit`` prunes only complete checkpoints,
  after the new one is in place, never the newest.
- *Safe loading.* Nothing in a checkpoint can run code: weights load through safetensors,
  everything else through ``torch.load(weights_only=True)`` (numpy arrays allowed for the RNG
  states); a file that needs anything else is refused with :class:`~accel.core.checkpoint.errors.UnsafeCheckpointError`.

Example:
    >>> accelerator.save_state("ckpt")  # doctest: +SKIP
    >>> accelerator.load_state("ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING, Any

from accel.core.checkpoint.async_writer import AsyncCheckpointWriter
from accel.core.checkpoint.context import CheckpointContext, CheckpointHooks
from accel.core.checkpoint.folders import (
    checkpoints_root,
    fsync_tree,
    latest_checkpoint,
    numbered_checkpoints,
    publish,
)
from accel.core.checkpoint.layout import (
    CHECKPOINT_RE,
    COMPLETE_MARKER,
    FORMAT_VERSION,
    PARTIAL_SUFFIX,
    PathLike,
)
from accel.core.checkpoint.writer import write_files
from accel.state import PartialState
from accel.state.progress import report_done

if TYPE_CHECKING:
    from accel.core.plugins import ProjectConfiguration

__all__ = ["check_supported", "load_state", "save_state"]


_UNSUPPORTED = ("MEGATRON_LM",)


def check_supported(distributed_type: Any, what: str) -> None:
    """Refuse ``save_state``/``load_state`` for job kinds whose states accel cannot save yet.

    Example:
        >>> check_supported("MULTI_CPU", "save_state")
    """
    kind = getattr(distributed_type, "value", str(distributed_type))
    if kind in _UNSUPPORTED:
        raise ValueError(
            f"{what} does not support distributed_type={kind} yet (sharded model and optimizer "
            "states); save the weights with accelerator.save_model(model, folder) instead"
        )


def _barrier() -> None:
    PartialState().wait_for_everyone()


def _check_model_kwargs(
    strategy: CheckpointHooks, model_kwargs: dict[str, Any], async_save: bool
) -> None:
    if not model_kwargs:
        return
    accepted = tuple(getattr(strategy, "save_model_kwargs", ()))
    unknown = sorted(set(model_kwargs) - set(accepted))
    if unknown:
        valid = (
            f"it accepts {', '.join(accepted)}"
            if accepted
            else "it writes its files itself and takes no extra keywords (only DeepSpeed's "
            "engine.save_checkpoint does)"
        )
        raise TypeError(
            f"save_state() got keyword arguments {unknown} that the {strategy.name!r} strategy "
            f"would ignore: {valid}"
        )
    if async_save:
        raise ValueError(
            f"save_state(async_save=True) cannot pass {sorted(model_kwargs)} to the model save "
            "function; drop async_save or the keywords"
        )


def save_state(
    strategy: CheckpointHooks,
    context: CheckpointContext,
    config: ProjectConfiguration,
    writer: AsyncCheckpointWriter,
    output_dir: PathLike | None = None,
    safe_serialization: bool = True,
    async_save: bool = False,
    **model_kwargs: Any,
) -> str:
    """Save ``context``'s objects through ``strategy`` into a crash-safe checkpoint folder; see
    :meth:`Accelerator.save_state`. ``writer`` writes in the background with ``async_save``
    (the caller waits for the previous save first); ``model_kwargs`` go to the strategy's
    save function and must be among its ``save_model_kwargs``.

    Example:
        >>> save_state(strategy, context, config, writer, "ckpt")  # doctest: +SKIP
    """
    _check_model_kwargs(strategy, model_kwargs, async_save)
    if async_save and not strategy.supports_async_save:
        raise ValueError(
            f"save_state(async_save=True) is not supported by the {strategy.name!r} strategy: "
            "it writes its own checkpoint format; call save_state() without async_save"
        )
    if config.automatic_checkpoint_naming:
        root = checkpoints_root(config.project_dir)
        output_dir = os.path.join(root, f"checkpoint_{config.iteration}")
        if os.path.exists(output_dir):
            raise ValueError(
                f"checkpoint folder {output_dir!r} (iteration {config.iteration}) already exists; "
                "set accelerator.project_configuration.iteration to the next free number"
            )
    elif output_dir is None:
        raise ValueError(
            "save_state() needs output_dir, or ProjectConfiguration(automatic_checkpoint_naming=True)"
        )
    final = os.path.abspath(os.path.expanduser(os.fspath(output_dir)))
    parent, name = os.path.split(final)
    partial = os.path.join(parent, f".{name}{PARTIAL_SUFFIX}")
    finalizer = context.writes_shared_files

    if finalizer:
        os.makedirs(parent, exist_ok=True)
        if os.path.isfile(final):
            raise NotADirectoryError(f"save_state: {final!r} is a file, not a folder")
        shutil.rmtree(partial, ignore_errors=True)  # left over from a crashed save
        os.makedirs(partial)
    _barrier()
    marker = {
        "format": "accel-checkpoint",
        "version": FORMAT_VERSION,
        "num_processes": context.num_processes,
        "step": context.step,
        "iteration": config.iteration,
        "safe_serialization": bool(safe_serialization),
    }

    if async_save:
        staged = writer.stage(strategy.checkpoint_files(partial, context, safe_serialization))
        writer.process_group()  # created now, by every process together

        def write_and_publish() -> None:
            error: BaseException | None = None
            started = time.monotonic()
            try:
                write_files(
                    partial, staged, progress=False
                )  # a bar would cut into training's output
            except BaseException as caught:
                error = caught
            if not writer.all_succeeded(error is None):
                if finalizer:
                    shutil.rmtree(partial, ignore_errors=True)
                if error is not None:
                    raise error
                raise RuntimeError(
                    f"another process failed to write its part of {final!r}; not published"
                )
            published = True
            if finalizer:
                try:
                    publish(partial, final, marker, config)
                except BaseException as caught:
                    error, published = caught, False
            if not writer.all_succeeded(published):
                if error is not None:
                    raise error
                raise RuntimeError(f"the main process failed to publish {final!r}")
            report_done(f"checkpoint {final} written", sum(f.size for f in staged), started)

        writer.submit(write_and_publish, final)
    else:
        strategy.save_checkpoint(
            partial, context, safe_serialization=safe_serialization, **model_kwargs
        )
        fsync_tree(partial)
        _barrier()  # every process has written and flushed its files
        if finalizer:
            publish(partial, final, marker, config)
        _barrier()
    config.iteration += 1
    return final


def load_state(
    strategy: CheckpointHooks,
    context: CheckpointContext,
    config: ProjectConfiguration,
    input_dir: PathLike | None = None,
    load_kwargs: dict[str, Any] | None = None,
    **load_model_func_kwargs: Any,
) -> str:
    """Restore ``context``'s objects through ``strategy`` from a checkpoint folder (the
    newest complete one without ``input_dir``); see :meth:`Accelerator.load_state`. The
    saved step ends in ``context.step``.

    Example:
        >>> load_state(strategy, context, config, "ckpt")  # doctest: +SKIP
    """
    if input_dir is not None:
        input_dir = os.path.abspath(os.path.expanduser(os.fspath(input_dir)))
        if os.path.isfile(input_dir):
            raise ValueError(  # Accelerate raises ValueError for a path that is not a folder
                f"load_state: {input_dir!r} is a file; load_state expects a checkpoint folder "
                f"(the one save_state wrote, e.g. {os.path.dirname(input_dir)!r})"
            )
        if not os.path.isdir(input_dir):
            raise ValueError(f"load_state: the folder {input_dir!r} does not exist")
    elif config.automatic_checkpoint_naming:
        root = checkpoints_root(config.project_dir)
        input_dir = latest_checkpoint(root)
        if input_dir is None:
            unmarked = [p for _, p in numbered_checkpoints(root)]
            hint = (
                f"; {len(unmarked)} folder(s) lack the completion marker {COMPLETE_MARKER} "
                f"(crashed saves, or written by another tool): pass one as input_dir to load it"
                if unmarked
                else ""
            )
            raise FileNotFoundError(f"load_state: no complete checkpoint in {root!r}{hint}")
    else:
        raise ValueError(
            "load_state() needs input_dir, or ProjectConfiguration(automatic_checkpoint_naming=True)"
        )

    strategy.load_checkpoint(input_dir, context, load_kwargs, **load_model_func_kwargs)

    match = CHECKPOINT_RE.match(os.path.basename(input_dir))
    if config.automatic_checkpoint_naming and match:
        config.iteration = max(config.iteration, int(match.group(1)) + 1)
    return input_dir
