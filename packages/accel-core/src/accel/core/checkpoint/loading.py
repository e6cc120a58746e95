"""``load_state``'s reading side: check and read every file first, then apply.

A checkpoint is loaded in two steps so that a bad file never leaves a half-restored job:

1. :func:`plan_checkpoint_load` reads and checks everything, writing nothing into the live
   objects: every file the prepared objects need exists; model weights have a valid layout
   (the safetensors header and file size, or the whole ``.bin`` read) with the model's keys
   and shapes; ``optimizer.bin`` has the optimizer's parameter groups; scheduler, scaler and
   custom-object files are readable; ``random_states_{rank}.pkl`` holds RNG states that
   ``random``, numpy and torch accept (tried on throwaway generators).
2. :func:`apply_checkpoint_load` puts the result into the models, optimizers, schedulers,
   scaler, RNGs, dataloaders and custom objects.

A file that fails step 1 raises :class:`~accel.core.CorruptCheckpointError` (or
:class:`~accel.core.checkpoint.UnsafeCheckpointError`, or ``FileNotFoundError``) naming it,
and the job is exactly as it was before the call.

Example:
    >>> plan = plan_checkpoint_load(context, strategy, "ckpt", context.models)  # doctest: +SKIP
    >>> apply_checkpoint_load(context, strategy, plan)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from accel.big_model.checkpoint import ALIASES_KEY
from accel.core.checkpoint.context import CheckpointContext, StateDictHooks
from accel.core.checkpoint.errors import CorruptCheckpointError
from accel.core.checkpoint.gradients import load_accumulated_gradients
from accel.core.checkpoint.layout import (
    CUSTOM_NAME,
    DATALOADER_KEY,
    FSDP_MODEL_NAME,
    MODEL_NAME,
    OPTIMIZER_NAME,
    RNG_STATE_NAME,
    SAFE_MODEL_NAME,
    SCALER_NAME,
    SCHEDULER_NAME,
    numbered,
)
from accel.core.checkpoint.reader import read_safetensors, read_torch_file, safetensors_layout
from accel.core.checkpoint.rng import restore_dataloader, set_rng_states
from accel.core.checkpoint.unpickling import safe_load
from accel.state.process_logging import library_logger
from accel.state.progress import progress_bar

__all__ = [
    "CheckpointLoadPlan",
    "apply_checkpoint_load",
    "plan_checkpoint_load",
    "read_checkpoint_files",
]

logger = library_logger(__name__)


@dataclass
class _ModelLoad:
    model: torch.nn.Module
    path: str
    safe: bool
    load: Callable[..., Any]
    plain: bool  # loading is copying tensors: bytes may go straight into the parameters
    strict: bool
    kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor] | None = None  # read already (.bin files)


@dataclass
class CheckpointLoadPlan:
    """Everything :func:`plan_checkpoint_load` read and checked, ready to apply.

    Example:
        >>> CheckpointLoadPlan("ckpt").rng is None
        True
    """

    folder: str
    models: list[_ModelLoad] = field(default_factory=list)
    optimizers: list[tuple[Any, Any]] = field(default_factory=list)
    schedulers: list[tuple[Any, Any]] = field(default_factory=list)
    scaler: Any = None
    rng: Mapping[str, Any] | None = None
    custom: list[tuple[Any, Any]] = field(default_factory=list)


# -- model weights ---------------------------------------------------------------------------


def _strip_prefix(state_dict: dict[str, Any], own: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    prefix = "module."
    if (
        state_dict
        and all(k.startswith(prefix) for k in state_dict)
        and not any(k.startswith(prefix) for k in own)
    ):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def _plain_modules(model: torch.nn.Module) -> bool:
    """Whether no module of ``model`` transforms what it loads (load hooks, its own
    ``_load_from_state_dict``), so bytes may be read straight into its parameters when the
    strategy loads plainly too."""
    default = torch.nn.Module._load_from_state_dict
    return not any(
        module._load_state_dict_pre_hooks
        or module._load_state_dict_post_hooks
        or type(module)._load_from_state_dict is not default
        for module in model.modules()
    )


def _check_keys(item: _ModelLoad, shapes: dict[str, list[int]]) -> None:
    """Refuse, before any byte is loaded, weights whose keys (strict) or shapes do not fit."""
    own = item.model.state_dict(keep_vars=True)
    shapes = _strip_prefix(shapes, own)
    wrong = {
        k: (shape, list(own[k].shape))
        for k, shape in shapes.items()
        if k in own and list(own[k].shape) != list(shape)
    }
    if wrong:
        detail = ", ".join(f"{k}: stored {s}, model {m}" for k, (s, m) in list(wrong.items())[:8])
        raise RuntimeError(
            f"the weights in {item.path!r} do not fit {type(item.model).__name__}: shapes differ "
            f"for {len(wrong)} tensor(s) ({detail}); nothing was loaded"
        )
    if not item.strict:
        return
    present = {own[k].data_ptr() for k in shapes if k in own and own[k].numel()}
    missing = [
        k for k in own if k not in shapes and not (own[k].numel() and own[k].data_ptr() in present)
    ]
    unexpected = [k for k in shapes if k not in own]
    if missing or unexpected:
        raise RuntimeError(
            f"the weights in {item.path!r} do not match {type(item.model).__name__}: missing keys "
            f"{missing}, unexpected keys {unexpected}. Pass strict=False to load_state to load "
            "the matching part only; nothing was loaded."
        )


def _plan_model(item: _ModelLoad) -> None:
    if item.safe:
        layout, metadata = safetensors_layout(item.path)
        shapes = {name: shape for name, (_, shape) in layout.items()}
        for alias, kept in json.loads(metadata.get(ALIASES_KEY, "{}")).items():
            if kept in shapes:
                shapes[alias] = shapes[kept]
    else:
        item.state_dict = read_torch_file(item.path, safe_load)
        if not isinstance(item.state_dict, Mapping):
            raise CorruptCheckpointError(
                f"{item.path!r} holds a {type(item.state_dict).__name__}, not a state dict of "
                "tensors"
            )
        shapes = {k: list(getattr(v, "shape", [])) for k, v in item.state_dict.items()}
    if item.plain:
        _check_keys(item, shapes)


def _apply_model(item: _ModelLoad) -> None:
    model, path = item.model, item.path
    own = model.state_dict(keep_vars=True)
    placed: set[str] = set()
    if item.state_dict is None:
        into = own if item.plain else None
        state_dict, metadata, placed = read_safetensors(path, into=into)
        for alias, kept in json.loads(metadata.get(ALIASES_KEY, "{}")).items():
            if kept in state_dict:
                state_dict[alias] = state_dict[kept]
    else:
        state_dict = dict(item.state_dict)
    state_dict = _strip_prefix(state_dict, own)
    # Tensors read straight into the model are loaded already.
    todo = {k: v for k, v in state_dict.items() if k not in placed}
    result = item.load(model, todo, **item.kwargs)
    if not item.strict:
        return
    # Tied weights are saved once (safetensors refuses shared memory): a missing name that
    # shares memory with a loaded one is not missing. (Read again: a strategy's load may
    # replace parameters.)
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in state_dict if k in own and own[k].numel()}
    missing = [
        k
        for k in result.missing_keys
        if k not in placed and not (own[k].numel() and own[k].data_ptr() in loaded)
    ]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"the weights in {path!r} do not match {type(model).__name__}: missing keys "
            f"{missing}, unexpected keys {list(result.unexpected_keys)}. Pass strict=False to "
            "load_state to load the matching part only."
        )


# -- the other files -------------------------------------------------------------------------


def _corrupt(path: str, what: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"{path!r} is not a valid checkpoint file: {what}. Nothing was loaded from this "
        "checkpoint; load an earlier one, or save again."
    )


def _check_optimizer(path: str, state: Any, optimizer: Any) -> None:
    if not (
        isinstance(state, Mapping)
        and isinstance(state.get("state"), Mapping)
        and isinstance(state.get("param_groups"), (list, tuple))
    ):
        raise _corrupt(
            path, "an optimizer state needs 'state' (a dict) and 'param_groups' (a list)"
        )
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        return
    stored = [
        len(g.get("params", ())) if isinstance(g, Mapping) else -1 for g in state["param_groups"]
    ]
    live = [len(g["params"]) for g in groups]
    if stored != live:
        raise ValueError(
            f"{path!r} was saved from an optimizer with parameter groups of sizes {stored}, but "
            f"this optimizer has {live}: prepare the same model and optimizer as when it was "
            "saved; nothing was loaded"
        )


def _check_rng(path: str, states: Any) -> None:
    keys = ("random_state", "numpy_random_seed", "torch_manual_seed")
    if not isinstance(states, Mapping) or any(k not in states for k in keys):
        found = sorted(states) if isinstance(states, Mapping) else type(states).__name__
        raise _corrupt(path, f"random states need the keys {list(keys)}, found {found}")
    trials: list[tuple[str, Callable[[Any], Any]]] = [
        ("random_state", random.Random().setstate),
        ("numpy_random_seed", np.random.RandomState().set_state),
        ("torch_manual_seed", torch.Generator().set_state),
    ]
    for key, setter in trials:
        try:
            setter(states[key])
        except Exception as error:
            raise _corrupt(path, f"{key!r} is not a valid RNG state ({error})") from None
    if "step" in states:
        try:
            int(states["step"])
        except (TypeError, ValueError):
            raise _corrupt(path, f"'step' is {states['step']!r}, not a number") from None


def _check_mapping(path: str, state: Any, what: str) -> None:
    if not isinstance(state, Mapping):
        raise _corrupt(path, f"a {what} state is a dict, this file holds a {type(state).__name__}")


# -- the two steps ---------------------------------------------------------------------------


def _load_kwargs(load_kwargs: dict[str, Any] | None, device: torch.device) -> Any:
    load_kwargs = dict(load_kwargs or {})
    if load_kwargs.pop("weights_only", True) is False:
        raise ValueError(
            "load_state(load_kwargs={'weights_only': False}) is not supported: accel never "
            "unpickles code from a checkpoint; allow trusted types with "
            "torch.serialization.add_safe_globals instead"
        )
    map_location = load_kwargs.pop("map_location", "cpu")
    if load_kwargs:
        raise TypeError(f"load_kwargs accepts only 'map_location', got {sorted(load_kwargs)}")
    return device if map_location == "on_device" else map_location


def plan_checkpoint_load(
    context: CheckpointContext,
    hooks: StateDictHooks,
    input_dir: str | os.PathLike[str],
    models: list[torch.nn.Module],
    load_kwargs: dict[str, Any] | None = None,
    optimizers: list[Any] | None = None,
    schedulers: list[Any] | None = None,
    **load_model_func_kwargs: Any,
) -> CheckpointLoadPlan:
    """Read and check every file of ``input_dir`` that the prepared objects need, writing
    nothing into them (see the module docstring for what is checked).

    Example:
        >>> plan = plan_checkpoint_load(context, strategy, "ckpt", context.models)  # doctest: +SKIP
    """
    folder = os.fspath(input_dir)
    map_location = _load_kwargs(load_kwargs, context.device)
    model_kwargs = dict(load_model_func_kwargs)
    strict = bool(model_kwargs.pop("strict", True))
    optimizers = context.optimizers if optimizers is None else optimizers
    schedulers = context.schedulers if schedulers is None else schedulers
    plan = CheckpointLoadPlan(folder)

    def need(name: str) -> str:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint {folder!r} has no {name}: it was saved with fewer prepared "
                "objects than this script has (or is incomplete); nothing was loaded"
            )
        return path

    # Which files: all of them must exist before any is read.
    load = hooks.load_model_state_dict
    for i, model in enumerate(models):
        target = context.unwrap_model(model)
        target = getattr(target, "_orig_mod", target)
        safe_path = os.path.join(folder, numbered(SAFE_MODEL_NAME, i, ".safetensors"))
        # Accelerate names the full weights of an FSDP model pytorch_model_fsdp[_i].bin.
        fsdp_path = os.path.join(folder, numbered(FSDP_MODEL_NAME, i, ".bin"))
        if os.path.isfile(safe_path):
            path, safe = safe_path, True
        elif os.path.isfile(fsdp_path):
            path, safe = fsdp_path, False
        else:
            path, safe = need(numbered(MODEL_NAME, i, ".bin")), False
        plain = hooks.plain_model_loading and _plain_modules(target)
        plan.models.append(_ModelLoad(target, path, safe, load, plain, strict, model_kwargs))
    optimizer_paths = [need(numbered(OPTIMIZER_NAME, i, ".bin")) for i in range(len(optimizers))]
    scheduler_paths = [need(numbered(SCHEDULER_NAME, i, ".bin")) for i in range(len(schedulers))]
    scaler_path = need(SCALER_NAME) if context.scaler is not None else None
    found = [f for f in os.listdir(folder) if re.fullmatch(rf"{CUSTOM_NAME}_\d+\.pkl", f)]
    if len(found) != len(context.custom_objects):
        raise RuntimeError(
            f"checkpoint {folder!r} holds {len(found)} custom objects ({sorted(found)}) but "
            f"{len(context.custom_objects)} are registered with register_for_checkpointing; "
            "register the same objects, in the same order, as when it was saved"
        )
    custom_paths = [need(f"{CUSTOM_NAME}_{i}.pkl") for i in range(len(found))]

    # Read and check, smallest risk of a late failure first.
    cpu = map_location in ("cpu", torch.device("cpu"))
    for opt, path in zip(optimizers, optimizer_paths):
        state = read_torch_file(path, safe_load) if cpu else safe_load(path, map_location)
        _check_optimizer(path, state, opt)
        plan.optimizers.append((opt, state))
    for sched, path in zip(schedulers, scheduler_paths):
        state = safe_load(path)
        _check_mapping(path, state, "scheduler")
        plan.schedulers.append((sched, state))
    if scaler_path is not None:
        plan.scaler = safe_load(scaler_path)
        _check_mapping(scaler_path, plan.scaler, "gradient scaler")
    rng_path = os.path.join(folder, f"{RNG_STATE_NAME}_{context.process_index}.pkl")
    if os.path.isfile(rng_path):
        plan.rng = safe_load(rng_path)
        _check_rng(rng_path, plan.rng)
    else:
        logger.warning("%s not found: random states will not be restored", rng_path)
    for obj, path in zip(context.custom_objects, custom_paths):
        plan.custom.append((obj, safe_load(path)))
    for item in plan.models:
        _plan_model(item)
    return plan


def apply_checkpoint_load(
    context: CheckpointContext, hooks: StateDictHooks, plan: CheckpointLoadPlan
) -> None:
    """Put what :func:`plan_checkpoint_load` read into the prepared objects (and the saved
    step into ``context.step``).

    Example:
        >>> apply_checkpoint_load(context, strategy, plan)  # doctest: +SKIP
    """
    for item in plan.models:
        _apply_model(item)
    for opt, state in plan.optimizers:
        hooks.load_optimizer_state_dict(opt, state)
    for sched, state in plan.schedulers:
        sched.load_state_dict(state)
    if plan.scaler is not None:
        context.scaler.load_state_dict(plan.scaler)
    load_accumulated_gradients(context, plan.folder)
    if plan.rng is not None:
        states = plan.rng
        if "step" in states:
            context.step = int(states["step"])
        set_rng_states(states)
        positions = states.get(DATALOADER_KEY) or []
        for loader, position in zip(context.dataloaders, positions):
            restore_dataloader(loader, position, states)
    for obj, state in plan.custom:
        obj.load_state_dict(state)


def read_checkpoint_files(
    context: CheckpointContext,
    hooks: StateDictHooks,
    input_dir: str | os.PathLike[str],
    models: list[torch.nn.Module],
    load_kwargs: dict[str, Any] | None = None,
    optimizers: list[Any] | None = None,
    schedulers: list[Any] | None = None,
    **load_model_func_kwargs: Any,
) -> None:
    """Load the files of one checkpoint folder into the context's prepared objects
    (``optimizers``/``schedulers``: the context's unless given, as when saving): every
    file is read and checked first, then applied, so a bad file changes nothing.

    ``load_kwargs`` go to ``torch.load`` for optimizer files (``map_location`` only:
    ``weights_only`` is always ``True``); ``load_model_func_kwargs`` go to the models'
    ``load_state_dict`` (e.g. ``strict=False``).

    Example:
        >>> read_checkpoint_files(context, strategy, "ckpt", context.models)  # doctest: +SKIP
    """
    folder = os.fspath(input_dir)
    total = (
        sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())
        if os.path.isdir(folder)
        else 0
    )
    with progress_bar(desc="Loading state", total=total, nbytes=True) as bar:
        plan = plan_checkpoint_load(
            context,
            hooks,
            input_dir,
            models,
            load_kwargs,
            optimizers,
            schedulers,
            **load_model_func_kwargs,
        )
        applied = sum(os.path.getsize(m.path) for m in plan.models if m.safe)  # read when applied
        bar.update(total - applied)
        apply_checkpoint_load(context, hooks, plan)
        bar.update(applied)
