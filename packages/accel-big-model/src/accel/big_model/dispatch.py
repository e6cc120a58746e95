"""Running a model spread over devices, RAM and disk: :func:`dispatch_model` and the one-call
:func:`load_checkpoint_and_dispatch`.

:func:`load_checkpoint_and_dispatch` plans a device map, loads the checkpoint shard by shard
(:func:`~accel.big_model.checkpoint.load_checkpoint_in_model`), and attaches the hooks. Modules
mapped to ``"disk"`` are read from the checkpoint's safetensors shards in place (nothing is
copied into an offload folder), and a map with every module on ``"disk"`` works. Offloaded
forwards prefetch the next module's weights in a background thread (``prefetch=False`` or
``ACCEL_OFFLOAD_PREFETCH=0`` to disable). Whole-model offload (:func:`cpu_offload`,
:func:`disk_offload`) is in :mod:`~accel.big_model.whole_model_offload`.

Example:
    >>> model = dispatch_model(nn.Sequential(nn.Linear(2, 2)), {"": "cpu"})
    >>> model.hf_device_map
    {'': 'cpu'}
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from typing import Any, Union

import torch
from torch import nn

from accel.big_model.checkpoint import checkpoint_files, is_safetensors, load_checkpoint_in_model
from accel.big_model.device_lookup import device_for
from accel.big_model.device_map import resolve_device_map
from accel.big_model.device_map_checks import check_device_map
from accel.big_model.hook_attach import attach_align_device_hook_on_blocks
from accel.big_model.offload import (
    INDEX_NAME,
    OffloadedWeightsLoader,
    extract_submodules_state_dict,
    offload_state_dict,
)
from accel.big_model.offload_resources import (
    new_prefetcher,
    setup_prefetch,
    temporary_offload_folder,
)
from accel.big_model.tied import find_tied_parameters, retie_parameters
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias
SkipKeys = Union[str, list[str], None]  # noqa: UP007 - runtime alias


class _TiedWeightsMap(Mapping):
    """A weights map where a tied weight missing under its own name is found under a sibling's."""

    def __init__(
        self, base: Mapping, tied_params: list[list[str]], model: nn.Module | None = None
    ) -> None:
        self.base = base
        self.siblings = {name: group for group in tied_params for name in group}
        self._model = None if model is None else weakref.ref(model)

    def _resolve(self, key: str) -> str:
        if key in self.base:
            return key
        for other in self.siblings.get(key, ()):
            if other in self.base:
                return other
        raise KeyError(key)

    def _resident_sibling(self, key: str) -> torch.Tensor | None:
        """A sibling of ``key`` kept in memory by the model (its module is not offloaded), e.g.
        ``lm_head.weight`` on disk tied to ``embed_tokens.weight`` on the CPU."""
        model = None if self._model is None else self._model()
        if model is None:
            return None
        for other in self.siblings.get(key, ()):
            try:
                tensor = model.get_parameter(other)
            except AttributeError:
                continue
            if tensor.device.type != "meta":
                return tensor.detach()
        return None

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self.base[self._resolve(key)]
        except KeyError:
            tensor = self._resident_sibling(key)
            if tensor is None:
                raise
            return tensor

    def __contains__(self, key: object) -> bool:
        try:
            self._resolve(key)  # type: ignore[arg-type]
        except KeyError:
            return self._resident_sibling(key) is not None  # type: ignore[arg-type]
        return True

    def __iter__(self) -> Iterator[str]:
        seen = set(self.base)
        yield from self.base
        yield from (k for k in self.siblings if k not in seen and k in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _names_device(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether a ``Module.to(...)`` call names a device (``to(torch.float16)`` only casts):
    its first argument is a device or a tensor, or it passes ``device=``/``tensor=``."""
    if kwargs.get("device") is not None or kwargs.get("tensor") is not None:
        return True
    first = args[0] if args else None
    if isinstance(first, bool):
        return False
    return isinstance(first, (str, int, torch.device, torch.Tensor))


def _guard_moves(model: nn.Module) -> None:
    """Warn on ``model.to``/``.cuda`` (hooks fix devices); refuse when weights are offloaded."""

    def guard(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if fn.__name__ != "to" or _names_device(args, kwargs):
                logger.warning("You shouldn't move a model that is dispatched using accel hooks.")
            if any(p.device.type == "meta" for p in model.parameters()):
                raise RuntimeError(
                    "You can't move a model that has some modules offloaded to cpu or disk."
                )
            return fn(*args, **kwargs)

        return wrapper

    model.to = guard(model.to)
    model.cuda = guard(model.cuda)


def dispatch_model(
    model: nn.Module,
    device_map: Mapping[str, Device],
    main_device: Device | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    offload_dir: PathLike | None = None,
    offload_index: Mapping[str, Mapping[str, Any]] | None = None,
    offload_buffers: bool = False,
    skip_keys: SkipKeys = None,
    preload_module_classes: list[str] | None = None,
    force_hooks: bool = False,
    prefetch: bool | None = None,
) -> nn.Module:
    """Attach the hooks that run ``model`` as ``device_map`` says.

    Modules on an accelerator run there; ``"cpu"`` modules are offloaded to RAM (streamed to
    ``main_device`` per forward) unless the main device is the CPU; ``"disk"`` modules are
    read per forward from, in order: ``offload_index``, ``offload_dir/index.json``, the index
    :func:`~accel.big_model.checkpoint.load_checkpoint_in_model` recorded (safetensors shards
    read in place), or else their current weights are written to ``offload_dir`` (a temporary
    folder owned by the model if none is given; see :func:`cleanup_offload`). One device
    without ``force_hooks`` just moves the model. ``prefetch`` (default
    ``ACCEL_OFFLOAD_PREFETCH``, on) loads the next offloaded module during each forward.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> x = torch.ones(1, 2)
        >>> expected = model(x)
        >>> model = dispatch_model(model, {"0": "cpu", "1": "disk"})
        >>> model[1].weight.device.type, torch.equal(model(x), expected)
        ('meta', True)
    """
    check_device_map(model, device_map)
    devices = list(dict.fromkeys(device_map.values()))
    if len(devices) > 1 or "disk" in devices or force_hooks:
        if main_device is None:
            on_device = [d for d in devices if d not in ("cpu", "disk")]
            main_device = on_device[0] if on_device else "cpu"

        if main_device != "cpu":
            cpu_modules = [name for name, device in device_map.items() if device == "cpu"]
            if state_dict is None and cpu_modules:
                state_dict = extract_submodules_state_dict(model.state_dict(), cpu_modules)

        disk_modules = [name for name, device in device_map.items() if device == "disk"]
        has_folder_index = offload_dir is not None and os.path.isfile(
            os.path.join(offload_dir, INDEX_NAME)
        )
        if disk_modules and offload_index is None and not has_folder_index:
            recorded = model.__dict__.get("_accel_offload_index")
            if recorded:
                offload_index = recorded
            else:
                disk_state = extract_submodules_state_dict(model.state_dict(), disk_modules)
                empty = [k for k, v in disk_state.items() if v.device.type == "meta"]
                if empty:
                    raise ValueError(
                        "modules mapped to 'disk' have no weights to offload (on the meta "
                        f"device: {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}); "
                        "load a checkpoint first, or pass offload_dir= holding an index.json or "
                        "offload_index="
                    )
                if offload_dir is None:
                    offload_dir = temporary_offload_folder(model)
                offload_state_dict(offload_dir, disk_state)

        execution_device = {
            name: main_device if device in ("cpu", "disk") else device
            for name, device in device_map.items()
        }
        execution_device[""] = main_device
        offloaded = ("disk",) if main_device in ("cpu", "mps") else ("cpu", "disk")
        offload = {name: device in offloaded for name, device in device_map.items()}
        save_folder = offload_dir if disk_modules else None
        if state_dict is not None or save_folder is not None or offload_index is not None:
            weights_map: Mapping | None = OffloadedWeightsLoader(
                state_dict=state_dict,
                save_folder=save_folder,
                index=offload_index,
                device=main_device if offload_index is not None else None,
            )
        else:
            weights_map = None

        tied_params = find_tied_parameters(model)
        if weights_map is not None and tied_params:
            weights_map = _TiedWeightsMap(weights_map, tied_params, model)
        tied_params_map: dict[int, dict] = {}
        for group in tied_params:
            for name in group:
                param = model.get_parameter(name)
                if param.device.type != "meta":
                    tied_params_map[param.data_ptr()] = {}

        prefetcher = new_prefetcher(prefetch)
        attach_align_device_hook_on_blocks(
            model,
            execution_device=execution_device,
            offload=offload,
            offload_buffers=offload_buffers,
            weights_map=weights_map,
            skip_keys=skip_keys,
            preload_module_classes=preload_module_classes,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher,
        )
        setup_prefetch(model, prefetcher)
        retie_parameters(model, tied_params)
        _guard_moves(model)
    else:
        model.to(devices[0])
    model.__dict__["hf_device_map"] = dict(device_map)  # a plain attribute transformers reads
    return model


def _check_nothing_left_on_meta(
    model: nn.Module, checkpoint: PathLike, device_map: Mapping[str, Any], index: Mapping[str, Any]
) -> None:
    """Refuse to dispatch a model whose tensors the checkpoint did not fill (``strict=False``
    with missing keys): they have no data on the ``meta`` device, and moving them fails deep
    inside torch ("Cannot copy out of meta tensor")."""
    served = set(index)  # offloaded to disk: meta on purpose
    for group in find_tied_parameters(model):
        if served.intersection(group):
            served.update(group)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    left = [
        name
        for name, tensor in tensors
        if tensor.is_meta and name not in served and device_for(device_map, name, None) != "meta"
    ]
    if left:
        shown = ", ".join(left[:20]) + (f", ... ({len(left)} in all)" if len(left) > 20 else "")
        raise ValueError(
            f"load_checkpoint_and_dispatch: {type(model).__name__} has tensors that checkpoint "
            f"{os.fspath(checkpoint)!r} does not contain, still on the meta device (no data), so "
            f"the model cannot be dispatched: {shown}. Use a checkpoint that has them; or call "
            "load_checkpoint_in_model(model, checkpoint, device_map=..., strict=False), give "
            "them values with set_module_tensor_to_device(model, name, device, value=...), then "
            "dispatch_model(model, device_map); or create the model so that these tensors are "
            "real (outside init_empty_weights, or init_empty_weights(include_buffers=False) for "
            "buffers)"
        )


def load_checkpoint_and_dispatch(
    model: nn.Module,
    checkpoint: PathLike,
    device_map: str | Mapping[str, Device] | None = None,
    max_memory: Mapping[int | str, int | str] | None = None,
    no_split_module_classes: list[str] | None = None,
    offload_folder: PathLike | None = None,
    offload_buffers: bool = False,
    dtype: str | torch.dtype | None = None,
    offload_state_dict: bool | None = None,
    skip_keys: SkipKeys = None,
    preload_module_classes: list[str] | None = None,
    force_hooks: bool = False,
    strict: bool = False,
    prefetch: bool | None = None,
) -> nn.Module:
    """Load ``checkpoint`` into ``model`` (usually built under ``init_empty_weights``) and
    dispatch it.

    ``device_map`` is a dict, a device, or ``"auto"``/``"balanced"``/``"balanced_low_0"``/
    ``"sequential"`` (planned with ``max_memory`` and ``no_split_module_classes``). Modules on
    ``"disk"`` are served from the checkpoint's safetensors shards in place; only ``.bin``
    checkpoints are copied to ``offload_folder`` (a temporary folder owned by the model if not
    given). Every module on ``"disk"`` works too. ``offload_state_dict`` is accepted for
    compatibility (loading is already tensor by tensor).

    Example:
        >>> import tempfile
        >>> from accel.big_model.checkpoint import save_sharded_safetensors
        >>> folder = tempfile.mkdtemp()
        >>> source = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> _ = save_sharded_safetensors(source.state_dict(), folder)
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)).to("meta")
        >>> model = load_checkpoint_and_dispatch(model, folder, {"0": "disk", "1": "disk"})
        >>> x = torch.ones(1, 2)
        >>> torch.equal(model(x), source(x))
        True
    """
    if device_map is not None and not isinstance(device_map, Mapping):
        device_map = resolve_device_map(
            model,
            device_map,
            max_memory=max_memory,
            no_split_module_classes=no_split_module_classes,
            dtype=dtype,
            offload_buffers=offload_buffers,
        )
    if (
        device_map is not None
        and "disk" in device_map.values()
        and offload_folder is None
        and not all(is_safetensors(f) for f in checkpoint_files(checkpoint))
    ):
        offload_folder = temporary_offload_folder(model)
    load_checkpoint_in_model(
        model,
        checkpoint,
        device_map=device_map,
        offload_folder=offload_folder,
        dtype=dtype,
        offload_buffers=offload_buffers,
        strict=strict,
    )
    index = model.__dict__.get("_accel_offload_index")
    if device_map is None:
        return model
    _check_nothing_left_on_meta(model, checkpoint, device_map, index or {})
    return dispatch_model(
        model,
        device_map=device_map,
        offload_dir=offload_folder,
        offload_index=index or None,
        offload_buffers=offload_buffers,
        skip_keys=skip_keys,
        preload_module_classes=preload_module_classes,
        force_hooks=force_hooks,
        prefetch=prefetch,
    )
