"""Training checkpoints: ``Accelerator.save_state`` / ``load_state`` and what they rely on.

A checkpoint is a folder in Accelerate's layout, so it moves between accel and Accelerate in
both directions:

- ``model.safetensors``, ``model_1.safetensors``, ... (``pytorch_model.bin``, ... with
  ``safe_serialization=False``): the prepared models' weights, unwrapped (no ``module.``);
- ``optimizer.bin``, ``optimizer_1.bin``, ...; ``scheduler.bin``, ...; ``scaler.pt``;
- ``random_states_{rank}.pkl``: the step counter, the RNG states of ``random``, numpy and torch
  of each process, and (accel only, ignored by Accelerate) each prepared dataloader's position
  with the RNG states its current pass drew its order from;
- ``custom_checkpoint_{i}.pkl``: the objects passed to ``register_for_checkpointing``;
- ``accel_gradients_{rank}.safetensors``: each process's accumulated gradients, when the save
  falls inside a gradient accumulation window (accel only, ignored by Accelerate);
- ``accel_checkpoint.json``: the completion marker (accel only, ignored by Accelerate).

What accel adds:

- *Crash safety.* Everything is written into a hidden sibling folder
  (``.checkpoint_3.partial``), flushed to disk, then renamed into place by the main process after
  every process has finished; the marker is written last. ``load_state()`` without a path picks
  the newest folder that has the marker, and ``total_limit`` prunes only complete checkpoints,
  after the new one is in place, never the newest.
- *Safe loading.* Nothing in a checkpoint can run code: weights load through safetensors,
  everything else through ``torch.load(weights_only=True)`` (numpy arrays allowed for the RNG
  states); a file that needs anything else is refused with :class:`UnsafeCheckpointError`.

Example:
    >>> accelerator.save_state("ckpt")  # doctest: +SKIP
    >>> accelerator.load_state("ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import random
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils import hooks

from accel.core.accumulated_grads import gradients_file
from accel.core.async_checkpoint import AsyncCheckpointWriter
from accel.core.checkpoint_errors import describe_damage, unsafe_globals
from accel.core.checkpoint_files import CheckpointFile, write_files
from accel.core.checkpoint_reader import CorruptCheckpointError
from accel.state.process_logging import warn_on_main_process
from accel.state.progress import report_done

if TYPE_CHECKING:
    from accel.core.accelerator import Accelerator

__all__ = [
    "COMPLETE_MARKER",
    "UnsafeCheckpointError",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "safe_load",
    "write_checkpoint_files",
]
# Accelerate's ``save_accelerator_state``/``load_accelerator_state`` take the objects one by
# one; accel's ``write_checkpoint_files`` (and ``checkpoint_loading.read_checkpoint_files``)
# take the Accelerator, hence the different names.
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

SAFE_MODEL_NAME = "model"
MODEL_NAME = "pytorch_model"
FSDP_MODEL_NAME = "pytorch_model_fsdp"
OPTIMIZER_NAME = "optimizer"
SCHEDULER_NAME = "scheduler"
SCALER_NAME = "scaler.pt"
RNG_STATE_NAME = "random_states"
SAMPLER_NAME = "sampler"
CUSTOM_NAME = "custom_checkpoint"
COMPLETE_MARKER = "accel_checkpoint.json"
FORMAT_VERSION = 1
_DATALOADER_KEY = "accel_dataloaders"
_PARTIAL_SUFFIX = ".partial"
_DELETING_SUFFIX = ".deleting"
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")

PathLike = str | os.PathLike


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file that ``torch.load(weights_only=True)`` refuses: it would run code.

    Example:
        >>> raise UnsafeCheckpointError("refusing random_states_0.pkl")  # doctest: +SKIP
    """


def _numbered(stem: str, index: int, ext: str) -> str:
    return f"{stem}{ext}" if index == 0 else f"{stem}_{index}{ext}"


def _numpy_safe_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core
    allowed: list[Any] = [core.multiarray._reconstruct, np.ndarray, np.dtype, codecs.encode]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "UInt32DType"):
        allowed.append(dtypes.UInt32DType)
    return allowed


def safe_load(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` that also accepts numpy arrays; never runs code.

    Raises :class:`UnsafeCheckpointError` (naming the file and what it asked for) when the
    file needs anything beyond tensors, containers, numbers, strings and numpy arrays (types
    you trust can be allowed with ``torch.serialization.add_safe_globals``), and
    :class:`CorruptCheckpointError` (naming the file and what is wrong with it) when it is
    empty, truncated or not a ``torch.save`` file.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "state.pt")
        >>> torch.save({"step": 3}, path)
        >>> safe_load(path)
        {'step': 3}
    """
    path = os.fspath(path)
    allowed = _numpy_safe_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as error:
        wanted = unsafe_globals(path, allowed)
        if not wanted:
            raise CorruptCheckpointError(
                f"cannot read {path!r}: {describe_damage(path, error)}. Nothing was loaded from "
                "this checkpoint; load an earlier one, or save again."
            ) from error
        raise UnsafeCheckpointError(
            f"refusing to load {path!r}: it is not plain data (tensors, containers, numbers, "
            f"numpy arrays) and unpickling it could run code. It asks for {', '.join(wanted)}. "
            "If you wrote this file and trust it, allow its types with "
            "torch.serialization.add_safe_globals([...])."
        ) from error


# -- folders ---------------------------------------------------------------------------------


def is_complete_checkpoint(folder: PathLike) -> bool:
    """Whether ``folder`` holds a checkpoint that accel finished writing (it has the marker).

    Example:
        >>> is_complete_checkpoint("does/not/exist")
        False
    """
    return os.path.isfile(os.path.join(os.fspath(folder), COMPLETE_MARKER))


def _numbered_checkpoints(root: str) -> list[tuple[int, str]]:
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _CHECKPOINT_RE.match(name)
        path = os.path.join(root, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: PathLike) -> str | None:
    """The newest complete ``checkpoint_<n>`` folder under ``root``, or ``None``.

    Folders without the completion marker (a save that crashed, or a folder written by
    another tool) and hidden ``.partial`` folders are skipped.

    Example:
        >>> latest_checkpoint("runs/exp1/checkpoints")  # doctest: +SKIP
        'runs/exp1/checkpoints/checkpoint_7'
    """
    complete = [p for _, p in _numbered_checkpoints(os.fspath(root)) if is_complete_checkpoint(p)]
    return complete[-1] if complete else None


def _fsync_path(path: str) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync directories
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: str) -> None:
    for parent, _, files in os.walk(folder):
        for name in files:
            _fsync_path(os.path.join(parent, name))
        _fsync_path(parent)


def _prune(root: str, total_limit: int, keep: str) -> None:
    complete = [p for _, p in _numbered_checkpoints(root) if is_complete_checkpoint(p)]
    excess = len(complete) - total_limit
    for path in complete[: max(excess, 0)]:
        if os.path.abspath(path) == os.path.abspath(keep):
            continue
        logger.info("total_limit=%d: deleting the old checkpoint %s", total_limit, path)
        # Renamed out of sight first (atomic), so a crash mid-delete leaves a hidden folder
        # that the next prune finishes, never a half-deleted checkpoint_<n>.
        doomed = os.path.join(root, f".{os.path.basename(path)}{_DELETING_SUFFIX}")
        shutil.rmtree(doomed, ignore_errors=True)
        os.rename(path, doomed)
    for name in os.listdir(root):
        if name.startswith(".") and name.endswith(_DELETING_SUFFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


# -- what goes into the folder ---------------------------------------------------------------


def _rng_states(accelerator: Accelerator) -> dict[str, Any]:
    states: dict[str, Any] = {
        "step": accelerator.step,
        "random_state": random.getstate(),
        "numpy_random_seed": np.random.get_state(),
        "torch_manual_seed": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["torch_cuda_manual_seed"] = torch.cuda.get_rng_state_all()
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        states["torch_xpu_manual_seed"] = xpu.get_rng_state_all()
    states[_DATALOADER_KEY] = [_position(loader) for loader in accelerator._dataloaders]
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    if "torch_cuda_manual_seed" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])
    xpu = getattr(torch, "xpu", None)
    if "torch_xpu_manual_seed" in states and xpu is not None and xpu.is_available():
        xpu.set_rng_state_all(states["torch_xpu_manual_seed"])


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
                name = _numbered(SAFE_MODEL_NAME, i, ".safetensors")
                files.append(CheckpointFile(name, state, "safetensors"))
            else:
                files.append(CheckpointFile(_numbered(MODEL_NAME, i, ".bin"), dict(state)))
        for i, state in enumerate(optimizer_states):
            files.append(CheckpointFile(_numbered(OPTIMIZER_NAME, i, ".bin"), state))
        for i, sched in enumerate(schedulers):
            files.append(CheckpointFile(_numbered(SCHEDULER_NAME, i, ".bin"), sched.state_dict()))
        if accelerator.scaler is not None:
            files.append(CheckpointFile(SCALER_NAME, accelerator.scaler.state_dict()))
        for i, obj in enumerate(accelerator._custom_objects):
            files.append(CheckpointFile(f"{CUSTOM_NAME}_{i}.pkl", obj.state_dict()))
    rank = accelerator.process_index
    files.append(CheckpointFile(f"{RNG_STATE_NAME}_{rank}.pkl", _rng_states(accelerator)))
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


def _position(loader: Any) -> dict[str, Any]:
    """Where ``loader`` stands: its epoch, how many batches of the pass in progress were used,
    and what that pass drew its order from, as it was when the pass started (between passes:
    as it is now). A ``skip_first_batches`` copy in the middle of a pass speaks for it."""
    from accel.core.data.resume import capture_pass_rng
    from accel.state import GradientState

    active = GradientState().dataloader_references
    copy = loader._active_copy() if getattr(loader, "_active_copy", None) is not None else None
    if copy is not None and any(ref is copy for ref in active):
        loader = copy
    epoch = int(getattr(loader, "_epoch", 0))
    pending = getattr(loader, "_resume", None)
    if pending is not None:  # loaded but not iterated since
        position = {"epoch": epoch, "batches_yielded": int(pending.seen)}
        for key in ("pass_rng", "fetch_rng"):
            if getattr(pending, key) is not None:
                position[key] = getattr(pending, key)
        return position
    mid_pass = any(ref is loader for ref in active)
    if mid_pass and getattr(loader, "_pass_rng", None) is not None:
        position = {
            "epoch": epoch,
            "batches_yielded": int(getattr(loader, "_batches_yielded", 0)),
            "pass_rng": loader._pass_rng,
        }
        if getattr(loader, "_fetch_rng", None) is not None:
            position["fetch_rng"] = loader._fetch_rng
        return position
    return {"epoch": epoch, "batches_yielded": 0, "pass_rng": capture_pass_rng(loader)}


def _warn_if_replayed(loader: Any, seen: int) -> None:
    """A resumed pass over an iterable dataset without ``state_dict`` replays the stream."""
    from accel.core.data.resume import _datasets, _stateful_dataset, is_hf_dataset

    if not isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return
    if _stateful_dataset(loader) is not None or any(map(is_hf_dataset, _datasets(loader))):
        return
    warn_on_main_process(
        f"resuming a dataloader over {type(loader.dataset).__qualname__}, an iterable dataset "
        f"without state_dict()/load_state_dict(): the resumed pass reads the stream again from "
        f"the start of the pass and drops the {seen} batch(es) already used. This is exact only "
        "if the stream yields the same samples in the same order given the same RNG states "
        "(torch, numpy, random, its generator, set_epoch); give the dataset "
        "state_dict()/load_state_dict() to make it exact in every case.",
        stacklevel=3,
    )


def _restore_dataloader(
    loader: Any, position: Mapping[str, Any], states: Mapping[str, Any]
) -> None:
    """Make the next pass of ``loader`` draw the order of the checkpoint's pass and start at
    the first batch not used before the save."""
    from accel.core.data.resume import PendingResume, restore_pass_rng

    if not hasattr(loader, "_take_resume"):
        return
    loader._epoch = int(position.get("epoch", 0))
    seen = int(position.get("batches_yielded", 0))
    pass_rng = position.get("pass_rng")
    if seen > 0:
        _warn_if_replayed(loader, seen)
        loader._resume = PendingResume(
            seen=seen,
            pass_rng=pass_rng,
            fetch_rng=position.get("fetch_rng"),
            restore=lambda: _set_rng_states(states),
        )
        return
    loader._resume = None
    if pass_rng is not None:
        # Saved between passes: the global RNGs are the checkpoint's already (and the script
        # may draw from them before the next pass, as the saved run did); put back only the
        # loader's own generators and dataset state.
        restore_pass_rng(loader, pass_rng, global_rngs=False)


# -- the Accelerator methods -----------------------------------------------------------------


def _hook_dict(accelerator: Accelerator, name: str) -> OrderedDict[int, Callable[..., None]]:
    hooks_by_id = accelerator.__dict__.get(name)
    if hooks_by_id is None:
        hooks_by_id = accelerator.__dict__[name] = OrderedDict()
    return hooks_by_id


def run_save_pre_hooks(
    accelerator: Accelerator, weights: list[Mapping[str, torch.Tensor]], folder: str
) -> None:
    """Call the hooks of ``register_save_state_pre_hook`` as Accelerate does.

    Example:
        >>> run_save_pre_hooks(accelerator, [model.state_dict()], "ckpt")  # doctest: +SKIP
    """
    for hook in list(_hook_dict(accelerator, "_save_model_state_pre_hook").values()):
        hook(accelerator._models, weights, folder)


def run_load_pre_hooks(accelerator: Accelerator, folder: str) -> list[torch.nn.Module]:
    """Call the hooks of ``register_load_state_pre_hook`` as Accelerate does; returns the
    models left to load (a hook may remove those it loaded itself from the list).

    Example:
        >>> run_load_pre_hooks(accelerator, "ckpt")  # doctest: +SKIP
    """
    models = list(accelerator._models)
    for hook in list(_hook_dict(accelerator, "_load_model_state_pre_hook").values()):
        hook(models, folder)
    return models


def register_save_state_pre_hook(
    accelerator: Accelerator, hook: Callable[..., None]
) -> hooks.RemovableHandle:
    """See :meth:`Accelerator.register_save_state_pre_hook`.

    Example:
        >>> handle = register_save_state_pre_hook(accelerator, my_hook)  # doctest: +SKIP
    """
    registry = _hook_dict(accelerator, "_save_model_state_pre_hook")
    handle = hooks.RemovableHandle(registry)
    registry[handle.id] = hook
    return handle


def register_load_state_pre_hook(
    accelerator: Accelerator, hook: Callable[..., None]
) -> hooks.RemovableHandle:
    """See :meth:`Accelerator.register_load_state_pre_hook`.

    Example:
        >>> handle = register_load_state_pre_hook(accelerator, my_hook)  # doctest: +SKIP
    """
    registry = _hook_dict(accelerator, "_load_model_state_pre_hook")
    handle = hooks.RemovableHandle(registry)
    registry[handle.id] = hook
    return handle


def register_for_checkpointing(accelerator: Accelerator, *objects: Any) -> None:
    """See :meth:`Accelerator.register_for_checkpointing`.

    Example:
        >>> register_for_checkpointing(accelerator, ema)  # doctest: +SKIP
    """
    invalid = [
        obj
        for obj in objects
        if not (
            callable(getattr(obj, "state_dict", None))
            and callable(getattr(obj, "load_state_dict", None))
        )
    ]
    if invalid:
        names = ", ".join(f"{type(obj).__qualname__} ({obj!r:.60})" for obj in invalid)
        raise ValueError(
            "register_for_checkpointing needs objects with state_dict() and load_state_dict() "
            f"methods; these have not: {names}"
        )
    accelerator._custom_objects.extend(objects)


def _checkpoints_root(accelerator: Accelerator) -> str:
    if accelerator.project_dir is None:
        raise ValueError(
            "ProjectConfiguration(automatic_checkpoint_naming=True) needs a project_dir: pass "
            "Accelerator(project_dir=...) or ProjectConfiguration(project_dir=...)"
        )
    return os.path.join(os.fspath(accelerator.project_dir), "checkpoints")


_UNSUPPORTED = ("MEGATRON_LM",)


def _check_supported(accelerator: Accelerator, what: str) -> None:
    kind = getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))
    if kind in _UNSUPPORTED:
        raise ValueError(
            f"{what} does not support distributed_type={kind} yet (sharded model and optimizer "
            "states); save the weights with accelerator.save_model(model, folder) instead"
        )


def _publish(partial: str, final: str, marker: dict[str, Any], config: Any) -> None:
    """Mark ``partial`` complete and rename it to ``final`` (main process, after every rank
    flushed its files); then prune to ``total_limit``."""
    parent, name = os.path.split(final)
    marker_path = os.path.join(partial, COMPLETE_MARKER)
    with open(marker_path, "w") as handle:
        json.dump(marker, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_path(partial)
    old = os.path.join(parent, f".{name}.old")
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(partial, final)
    _fsync_path(parent)
    shutil.rmtree(old, ignore_errors=True)
    if config.automatic_checkpoint_naming and config.total_limit is not None:
        _prune(parent, config.total_limit, keep=final)


def checkpoint_writer(accelerator: Accelerator) -> AsyncCheckpointWriter:
    """The accelerator's background checkpoint writer (created on first use).

    Example:
        >>> checkpoint_writer(accelerator).in_flight  # doctest: +SKIP
        False
    """
    writer = getattr(accelerator, "_checkpoint_writer", None)
    if writer is None:
        writer = accelerator._checkpoint_writer = AsyncCheckpointWriter()
    return writer


def wait_for_checkpoint(accelerator: Accelerator) -> None:
    """See :meth:`Accelerator.wait_for_checkpoint`.

    Example:
        >>> wait_for_checkpoint(accelerator)  # doctest: +SKIP
    """
    writer = getattr(accelerator, "_checkpoint_writer", None)
    if writer is not None:
        writer.wait()


def save_state(
    accelerator: Accelerator,
    output_dir: PathLike | None = None,
    safe_serialization: bool = True,
    async_save: bool = False,
    **save_model_func_kwargs: Any,
) -> str:
    """See :meth:`Accelerator.save_state`.

    Example:
        >>> save_state(accelerator, "ckpt")  # doctest: +SKIP
    """
    wait_for_checkpoint(accelerator)  # one save in flight at most, in order
    _check_supported(accelerator, "save_state")
    strategy = accelerator.strategy
    if async_save and not strategy.supports_async_save:
        raise ValueError(
            f"save_state(async_save=True) is not supported by the {strategy.name!r} strategy: "
            "it writes its own checkpoint format; call save_state() without async_save"
        )
    config = accelerator.project_configuration
    if config.automatic_checkpoint_naming:
        root = _checkpoints_root(accelerator)
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
    partial = os.path.join(parent, f".{name}{_PARTIAL_SUFFIX}")
    finalizer = (
        accelerator.is_local_main_process
        if config.save_on_each_node
        else accelerator.is_main_process
    )

    if finalizer:
        os.makedirs(parent, exist_ok=True)
        if os.path.isfile(final):
            raise NotADirectoryError(f"save_state: {final!r} is a file, not a folder")
        shutil.rmtree(partial, ignore_errors=True)  # left over from a crashed save
        os.makedirs(partial)
    accelerator.wait_for_everyone()
    marker = {
        "format": "accel-checkpoint",
        "version": FORMAT_VERSION,
        "num_processes": accelerator.num_processes,
        "step": accelerator.step,
        "iteration": config.iteration,
        "safe_serialization": bool(safe_serialization),
    }

    if async_save:
        writer = checkpoint_writer(accelerator)
        staged = writer.stage(strategy.checkpoint_files(partial, safe_serialization))
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
                    _publish(partial, final, marker, config)
                except BaseException as caught:
                    error, published = caught, False
            if not writer.all_succeeded(published):
                if error is not None:
                    raise error
                raise RuntimeError(f"the main process failed to publish {final!r}")
            report_done(f"checkpoint {final} written", sum(f.size for f in staged), started)

        writer.submit(write_and_publish, final)
    else:
        strategy.save_checkpoint(partial, safe_serialization=safe_serialization)
        _fsync_tree(partial)
        accelerator.wait_for_everyone()  # every process has written and flushed its files
        if finalizer:
            _publish(partial, final, marker, config)
        accelerator.wait_for_everyone()
    config.iteration += 1
    return final


def load_state(
    accelerator: Accelerator,
    input_dir: PathLike | None = None,
    load_kwargs: dict[str, Any] | None = None,
    **load_model_func_kwargs: Any,
) -> str:
    """See :meth:`Accelerator.load_state`.

    Example:
        >>> load_state(accelerator, "ckpt")  # doctest: +SKIP
    """
    wait_for_checkpoint(accelerator)  # the save in flight may be the one to load
    _check_supported(accelerator, "load_state")
    config = accelerator.project_configuration
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
        root = _checkpoints_root(accelerator)
        input_dir = latest_checkpoint(root)
        if input_dir is None:
            unmarked = [p for _, p in _numbered_checkpoints(root)]
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

    accelerator.strategy.load_checkpoint(input_dir, load_kwargs, **load_model_func_kwargs)

    match = _CHECKPOINT_RE.match(os.path.basename(input_dir))
    if config.automatic_checkpoint_naming and match:
        config.iteration = max(config.iteration, int(match.group(1)) + 1)
    return input_dir
