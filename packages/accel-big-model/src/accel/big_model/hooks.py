"""Forward hooks that see args and kwargs, and the hook that keeps weights and inputs together.

:func:`add_hook_to_module` wraps a module's ``forward`` so a :class:`ModelHook` runs before
(with the call's args and kwargs) and after it. :class:`AlignDevicesHook` moves inputs to
the execution device and, for offloaded modules, brings the weights in from their weights
map before the forward and drops them back to the meta device after it. With an
:class:`~accel.big_model.prefetch.OffloadPrefetcher`, the next offloaded module's weights
load in a background thread meanwhile.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Union

import torch
from torch import nn

from accel.big_model.offload import PrefixedDataset
from accel.big_model.prefetch import OffloadPrefetcher, touch
from accel.big_model.tensors import (
    _clear_device_cache,
    get_non_persistent_buffers,
    named_module_tensors,
    set_module_tensor_to_device,
)
from accel.ops.structures import find_device, send_to_device

Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias
SkipKeys = Union[str, list[str], None]  # noqa: UP007 - runtime alias
TiedParamsMap = dict[int, dict[Device, torch.Tensor]]

_ADDED_ATTRIBUTES = ("to", "cuda", "npu", "xpu", "mlu", "sdaa", "musa")


def _eager(fn: Callable) -> Callable:
    """Keep a hook method out of torch.compile graphs (resolved on first call, cheap import).

    ``torch.compiler.disable`` imports ``torch._dynamo`` (seconds); until something imported
    it, nothing can be compiling, so the method runs as is.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        compiled = getattr(wrapper, "_eager_fn", None)
        if compiled is None:
            compiled = torch.compiler.disable(fn)
            wrapper._eager_fn = compiled
        return compiled(*args, **kwargs)

    return wrapper


class ModelHook:
    """Callbacks around a module's forward that receive its args and kwargs.

    Subclass and override :meth:`init_hook`, :meth:`pre_forward`, :meth:`post_forward`,
    :meth:`detach_hook`. With ``no_grad = True`` the forward runs under ``torch.no_grad()``.

    Example:
        >>> class Double(ModelHook):
        ...     def post_forward(self, module, output):
        ...         return output * 2
        >>> lin = add_hook_to_module(nn.Identity(), Double())
        >>> lin(torch.ones(1))
        tensor([2.])
    """

    no_grad = False

    def init_hook(self, module: nn.Module) -> nn.Module:
        """Run when the hook is attached; returns the module."""
        return module

    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        """Run before ``forward``; returns the (possibly changed) ``args, kwargs``."""
        return args, kwargs

    def post_forward(self, module: nn.Module, output: Any) -> Any:
        """Run after ``forward``; returns the (possibly changed) output."""
        return output

    def detach_hook(self, module: nn.Module) -> nn.Module:
        """Run when the hook is removed; returns the module."""
        return module


class SequentialHook(ModelHook):
    """Several hooks run one after the other (``pre_forward`` and ``post_forward`` both in order).

    Example:
        >>> hook = SequentialHook(ModelHook(), ModelHook())
        >>> len(hook.hooks)
        2
    """

    def __init__(self, *hooks: ModelHook) -> None:
        self.hooks = hooks

    def init_hook(self, module: nn.Module) -> nn.Module:
        for hook in self.hooks:
            module = hook.init_hook(module)
        return module

    @_eager
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        for hook in self.hooks:
            args, kwargs = hook.pre_forward(module, *args, **kwargs)
        return args, kwargs

    @_eager
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        for hook in self.hooks:
            output = hook.post_forward(module, output)
        return output

    def detach_hook(self, module: nn.Module) -> nn.Module:
        for hook in self.hooks:
            module = hook.detach_hook(module)
        return module


def _set_forward(module: nn.Module, forward: Callable) -> None:
    # Assigning forward on a GraphModuleImpl instance freezes later graph edits; patch the class.
    if "GraphModuleImpl" in str(type(module)):
        module.__class__.forward = forward
    else:
        module.forward = forward


def add_hook_to_module(module: nn.Module, hook: ModelHook, append: bool = False) -> nn.Module:
    """Attach ``hook`` to ``module`` by wrapping its ``forward`` (in place; returns ``module``).

    An existing hook is replaced, or with ``append=True`` chained before the new one in a
    :class:`SequentialHook`. :func:`remove_hook_from_module` restores the original forward.

    Example:
        >>> m = add_hook_to_module(nn.Linear(2, 2), ModelHook())
        >>> hasattr(m, "_hf_hook")
        True
    """
    if append and getattr(module, "_hf_hook", None) is not None:
        old_hook = module._hf_hook
        remove_hook_from_module(module)
        hook = SequentialHook(old_hook, hook)

    if hasattr(module, "_hf_hook") and hasattr(module, "_old_forward"):
        old_forward = module._old_forward
    else:
        old_forward = module.forward
        module._old_forward = old_forward

    module = hook.init_hook(module)
    module._hf_hook = hook

    def new_forward(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = module._hf_hook.pre_forward(module, *args, **kwargs)
        if module._hf_hook.no_grad:
            with torch.no_grad():
                output = module._old_forward(*args, **kwargs)
        else:
            output = module._old_forward(*args, **kwargs)
        return module._hf_hook.post_forward(module, output)

    _set_forward(
        module, functools.update_wrapper(functools.partial(new_forward, module), old_forward)
    )
    return module


def remove_hook_from_module(module: nn.Module, recurse: bool = False) -> nn.Module:
    """Detach the hook of ``module`` (and of all submodules with ``recurse``), restoring forward.

    Example:
        >>> m = remove_hook_from_module(add_hook_to_module(nn.Linear(2, 2), ModelHook()))
        >>> hasattr(m, "_hf_hook")
        False
    """
    if hasattr(module, "_hf_hook"):
        module._hf_hook.detach_hook(module)
        delattr(module, "_hf_hook")
    if hasattr(module, "_old_forward"):
        _set_forward(module, module._old_forward)
        delattr(module, "_old_forward")
    for attr in _ADDED_ATTRIBUTES:
        module.__dict__.pop(attr, None)
    if recurse:
        for child in module.children():
            remove_hook_from_module(child, recurse)
    return module


def remove_hook_from_submodules(module: nn.Module) -> None:
    """Remove the hooks of ``module`` and of all its submodules.

    Example:
        >>> remove_hook_from_submodules(nn.Sequential(nn.Linear(1, 1)))
    """
    remove_hook_from_module(module, recurse=True)


def _leaf(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    owner_name, _, leaf = name.rpartition(".")
    return (module.get_submodule(owner_name) if owner_name else module), leaf


class AlignDevicesHook(ModelHook):
    """Put inputs and weights on ``execution_device``; optionally offload weights between calls.

    - ``offload``: weights live in ``weights_map`` (default: a CPU copy taken at attach time)
      and on the meta device between forwards; each forward loads them and drops them after.
    - ``io_same_device``: the output goes back to the device the inputs came from.
    - ``offload_buffers``: offload buffers too (otherwise they stay on the execution device).
    - ``place_submodules``: handle the tensors of all submodules, not only direct ones.
    - ``skip_keys``: keys of dict inputs/outputs that are never moved.
    - ``tied_params_map``: ``{data_ptr: {device: tensor}}`` so a tied weight is placed once.
    - ``prefetcher`` (accel): an :class:`OffloadPrefetcher` shared by a model's hooks; the next
      offloaded module's weights load in the background while this one runs.

    Example:
        >>> lin = add_hook_to_module(nn.Linear(2, 2), AlignDevicesHook("cpu", offload=True))
        >>> lin.weight.device.type
        'meta'
        >>> lin(torch.ones(1, 2)).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        execution_device: Device | None = None,
        offload: bool = False,
        io_same_device: bool = False,
        weights_map: Mapping | None = None,
        offload_buffers: bool = False,
        place_submodules: bool = False,
        skip_keys: SkipKeys = None,
        tied_params_map: TiedParamsMap | None = None,
        prefetcher: OffloadPrefetcher | None = None,
    ) -> None:
        self.execution_device = execution_device
        self.offload = offload
        self.io_same_device = io_same_device
        self.weights_map = weights_map
        self.offload_buffers = offload_buffers
        self.place_submodules = place_submodules
        self.skip_keys = skip_keys
        self.input_device: torch.device | None = None
        self.param_original_devices: dict[str, torch.device] = {}
        self.buffer_original_devices: dict[str, torch.device] = {}
        self.original_devices: dict[str, torch.device] = {}
        self.tied_params_names: set[str] = set()
        self.tied_params_map = tied_params_map
        self.tied_pointers_to_remove: set[tuple[int, Device]] = set()
        self.prefetcher = prefetcher
        self._module: weakref.ref | None = None

    def __repr__(self) -> str:
        return (
            f"AlignDevicesHook(execution_device={self.execution_device}, offload={self.offload}, "
            f"io_same_device={self.io_same_device}, offload_buffers={self.offload_buffers}, "
            f"place_submodules={self.place_submodules}, skip_keys={self.skip_keys!r})"
        )

    def _offloaded_tensors(self, module: nn.Module) -> list[tuple[str, torch.Tensor]]:
        return list(
            named_module_tensors(
                module,
                include_buffers=self.offload_buffers,
                recurse=self.place_submodules,
                remove_non_persistent=True,
            )
        )

    def init_hook(self, module: nn.Module) -> nn.Module:
        self._module = weakref.ref(module)
        if str(self.execution_device) == "meta":
            self.tied_params_map = None
        device = self.execution_device
        if not self.offload and device is not None:
            for name, _ in named_module_tensors(module, recurse=self.place_submodules):
                set_module_tensor_to_device(
                    module, name, device, tied_params_map=self.tied_params_map
                )
        elif self.offload:
            self.original_devices = {
                name: t.device
                for name, t in named_module_tensors(module, recurse=self.place_submodules)
            }
            if self.weights_map is None:
                self.weights_map = {
                    name: t.to("cpu")
                    for name, t in named_module_tensors(
                        module, include_buffers=self.offload_buffers, recurse=self.place_submodules
                    )
                }
            for name, tensor in self._offloaded_tensors(module):
                if self.tied_params_map is not None and tensor.data_ptr() in self.tied_params_map:
                    self.tied_params_names.add(name)
                set_module_tensor_to_device(module, name, "meta")
            if device is not None:
                if not self.offload_buffers:
                    names = [n for n, _ in module.named_buffers(recurse=self.place_submodules)]
                else:
                    names = sorted(
                        get_non_persistent_buffers(module, recurse=self.place_submodules, fqns=True)
                    )
                for name in names:
                    set_module_tensor_to_device(
                        module, name, device, tied_params_map=self.tied_params_map
                    )
        return module

    # -- loading offloaded weights (also run in the prefetch thread) --------------------------

    def _fetch(self, wanted: list[tuple[str, torch.dtype]], background: bool = False) -> dict:
        """``{name: (value from the weights map, value ready on the execution device)}``."""
        device = self.execution_device
        fetched = {}
        for name, dtype in wanted:
            value = self.weights_map[name]
            ready = value
            if ready.dtype != dtype:
                ready = ready.to(dtype)
            if device is not None:
                ready = ready.to(device)
            if background:
                touch(ready)
            fetched[name] = (value, ready)
        return fetched

    def _wanted(self, module: nn.Module) -> list[tuple[str, torch.dtype]]:
        return [(name, t.dtype) for name, t in self._offloaded_tensors(module)]

    def prefetch_job(self) -> Callable[[], dict] | None:
        """A callable loading this hook's weights, for the prefetch thread (``None``: nothing)."""
        module = None if self._module is None else self._module()
        if module is None or not self.offload or self.weights_map is None:
            return None
        wanted = self._wanted(module)
        return functools.partial(self._fetch, wanted, True)

    def _install(self, module: nn.Module, fetched: dict) -> None:
        device = self.execution_device
        tied = self.tied_params_map
        for name, (value, ready) in fetched.items():
            pointer = value.data_ptr()
            if tied is not None:
                if name in self.tied_params_names and pointer not in tied:
                    tied[pointer] = {}
                if pointer in tied:
                    owner, leaf = _leaf(module, name)
                    placed = tied[pointer].get(device)
                    if placed is not None and leaf in owner._parameters:
                        owner._parameters[leaf] = placed
                        continue
                    self.tied_pointers_to_remove.add((pointer, device))
            target = "cpu" if device is None else device
            set_module_tensor_to_device(module, name, target, value=ready)
            if tied is not None and pointer in tied:
                owner, leaf = _leaf(module, name)
                tied[pointer].setdefault(device, getattr(owner, leaf))

    @_eager
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        prefetcher = self.prefetcher
        if prefetcher is not None and prefetcher.root is self:
            prefetcher.start_pass()
        if self.io_same_device:
            self.input_device = find_device([args, kwargs])
        if self.offload:
            self.tied_pointers_to_remove = set()
            fetched = prefetcher.take(self) if prefetcher is not None else None
            if fetched is None:
                fetched = self._fetch(self._wanted(module))
            if prefetcher is not None:
                prefetcher.schedule_after(self)
            self._install(module, fetched)
            del fetched
        if self.execution_device is None:
            return args, kwargs
        return (
            send_to_device(args, self.execution_device),
            send_to_device(kwargs, self.execution_device, skip_keys=self.skip_keys),
        )

    @_eager
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        if self.offload:
            for name, _ in self._offloaded_tensors(module):
                set_module_tensor_to_device(module, name, "meta")
            for pointer, device in self.tied_pointers_to_remove:
                self.tied_params_map.get(pointer, {}).pop(device, None)
            self.tied_pointers_to_remove = set()
        if self.io_same_device and self.input_device is not None:
            output = send_to_device(output, self.input_device, skip_keys=self.skip_keys)
        prefetcher = self.prefetcher
        if prefetcher is not None and prefetcher.root is self:
            prefetcher.end_pass()
        return output

    def detach_hook(self, module: nn.Module) -> nn.Module:
        if self.prefetcher is not None:
            self.prefetcher.forget(self)
        if self.offload:
            for name, device in self.original_devices.items():
                if device != torch.device("meta"):
                    value = (
                        self.weights_map.get(name, None) if self.weights_map is not None else None
                    )
                    set_module_tensor_to_device(module, name, device, value=value)
        return module


def attach_execution_device_hook(
    module: nn.Module,
    execution_device: Device,
    skip_keys: SkipKeys = None,
    preload_module_classes: list[str] | None = None,
    tied_params_map: TiedParamsMap | None = None,
) -> None:
    """Give every submodule with weights (and no hook yet) an :class:`AlignDevicesHook` that
    moves its inputs to ``execution_device``; stops below ``preload_module_classes``.

    Example:
        >>> m = nn.Sequential(nn.Linear(1, 1))
        >>> attach_execution_device_hook(m, "cpu")
        >>> hasattr(m[0], "_hf_hook")
        True
    """
    if not hasattr(module, "_hf_hook") and len(module.state_dict()) > 0:
        add_hook_to_module(
            module,
            AlignDevicesHook(
                execution_device, skip_keys=skip_keys, tied_params_map=tied_params_map
            ),
        )
    if preload_module_classes is not None and type(module).__name__ in preload_module_classes:
        return
    for child in module.children():
        attach_execution_device_hook(
            child,
            execution_device,
            skip_keys=skip_keys,
            preload_module_classes=preload_module_classes,
            tied_params_map=tied_params_map,
        )


def attach_align_device_hook(
    module: nn.Module,
    execution_device: Device | None = None,
    offload: bool = False,
    weights_map: Mapping | None = None,
    offload_buffers: bool = False,
    module_name: str = "",
    skip_keys: SkipKeys = None,
    preload_module_classes: list[str] | None = None,
    tied_params_map: TiedParamsMap | None = None,
    prefetcher: OffloadPrefetcher | None = None,
) -> None:
    """Attach an :class:`AlignDevicesHook` to every submodule that has direct tensors.

    ``weights_map`` is the whole model's map (each hook sees it through a
    :class:`PrefixedDataset` for its module name). A module whose class is in
    ``preload_module_classes`` loads all its submodules' weights at once and is not descended.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> attach_align_device_hook(m, "cpu", offload=True, weights_map=m.state_dict())
        >>> m[0].weight.device.type, hasattr(m[1], "_hf_hook")
        ('meta', False)
    """
    directs = list(named_module_tensors(module))
    full_offload = (
        offload
        and preload_module_classes is not None
        and type(module).__name__ in preload_module_classes
    )
    if directs or full_offload:
        prefixed = None
        if weights_map is not None:
            prefixed = PrefixedDataset(weights_map, f"{module_name}." if module_name else "")
        hook = AlignDevicesHook(
            execution_device=execution_device,
            offload=offload,
            weights_map=prefixed,
            offload_buffers=offload_buffers,
            place_submodules=full_offload,
            skip_keys=skip_keys,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher if offload else None,
        )
        add_hook_to_module(module, hook, append=True)
    if full_offload:
        return
    for child_name, child in module.named_children():
        attach_align_device_hook(
            child,
            execution_device=execution_device,
            offload=offload,
            weights_map=weights_map,
            offload_buffers=offload_buffers,
            module_name=f"{module_name}.{child_name}" if module_name else child_name,
            skip_keys=skip_keys,
            preload_module_classes=preload_module_classes,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher,
        )


def attach_align_device_hook_on_blocks(
    module: nn.Module,
    execution_device: Device | Mapping[str, Device] | None = None,
    offload: bool | Mapping[str, bool] = False,
    weights_map: Mapping | None = None,
    offload_buffers: bool = False,
    module_name: str = "",
    skip_keys: SkipKeys = None,
    preload_module_classes: list[str] | None = None,
    tied_params_map: TiedParamsMap | None = None,
    prefetcher: OffloadPrefetcher | None = None,
) -> None:
    """Attach hooks block by block: ``execution_device`` and ``offload`` may be dicts keyed by
    module name (as :func:`~accel.big_model.dispatch.dispatch_model` builds from a device map).

    A block that is not offloaded gets one hook placing all its weights; an offloaded block gets
    per-submodule offloading hooks; the root hook sends outputs back to the input device.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> attach_align_device_hook_on_blocks(
        ...     m, {"": "cpu", "0": "cpu", "1": "cpu"}, {"0": False, "1": True}, m.state_dict())
        >>> m[0].weight.device.type, m[1].weight.device.type
        ('cpu', 'meta')
    """
    if not isinstance(execution_device, Mapping) and not isinstance(offload, Mapping):
        if not offload:
            hook = AlignDevicesHook(
                execution_device=execution_device,
                io_same_device=True,
                skip_keys=skip_keys,
                place_submodules=True,
                tied_params_map=tied_params_map,
            )
            add_hook_to_module(module, hook)
        else:
            attach_align_device_hook(
                module,
                execution_device=execution_device,
                offload=True,
                weights_map=weights_map,
                offload_buffers=offload_buffers,
                module_name=module_name,
                skip_keys=skip_keys,
                tied_params_map=tied_params_map,
                prefetcher=prefetcher,
            )
        return

    if not isinstance(execution_device, Mapping):
        execution_device = dict.fromkeys(offload, execution_device)
    if not isinstance(offload, Mapping):
        offload = dict.fromkeys(execution_device, offload)

    if module_name in execution_device and module_name in offload and not offload[module_name]:
        hook = AlignDevicesHook(
            execution_device=execution_device[module_name],
            offload_buffers=offload_buffers,
            io_same_device=(module_name == ""),
            place_submodules=True,
            skip_keys=skip_keys,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher if module_name == "" else None,
        )
        add_hook_to_module(module, hook)
        attach_execution_device_hook(
            module,
            execution_device[module_name],
            skip_keys=skip_keys,
            tied_params_map=tied_params_map,
        )
    elif module_name in execution_device and module_name in offload:
        attach_align_device_hook(
            module,
            execution_device=execution_device[module_name],
            offload=True,
            weights_map=weights_map,
            offload_buffers=offload_buffers,
            module_name=module_name,
            skip_keys=skip_keys,
            preload_module_classes=preload_module_classes,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher,
        )
        if not hasattr(module, "_hf_hook"):
            hook = AlignDevicesHook(
                execution_device=execution_device[module_name],
                io_same_device=(module_name == ""),
                skip_keys=skip_keys,
                tied_params_map=tied_params_map,
                prefetcher=prefetcher if module_name == "" else None,
            )
            add_hook_to_module(module, hook)
        attach_execution_device_hook(
            module,
            execution_device[module_name],
            preload_module_classes=preload_module_classes,
            skip_keys=skip_keys,
            tied_params_map=tied_params_map,
        )
    elif module_name == "":
        hook = AlignDevicesHook(
            execution_device=execution_device.get(""),
            io_same_device=True,
            skip_keys=skip_keys,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher,
        )
        add_hook_to_module(module, hook)

    for child_name, child in module.named_children():
        attach_align_device_hook_on_blocks(
            child,
            execution_device=execution_device,
            offload=offload,
            weights_map=weights_map,
            offload_buffers=offload_buffers,
            module_name=f"{module_name}.{child_name}" if module_name else child_name,
            skip_keys=skip_keys,
            preload_module_classes=preload_module_classes,
            tied_params_map=tied_params_map,
            prefetcher=prefetcher,
        )


def align_device_hooks(module: nn.Module) -> list[AlignDevicesHook]:
    """The :class:`AlignDevicesHook` objects attached to ``module`` and its submodules, in
    module order (unwrapping :class:`SequentialHook`).

    Example:
        >>> m = nn.Sequential(nn.Linear(1, 1))
        >>> attach_align_device_hook(m, "cpu")
        >>> align_device_hooks(m)
        [AlignDevicesHook(execution_device=cpu, offload=False, io_same_device=False, offload_buffers=False, place_submodules=False, skip_keys=None)]
    """
    found = []
    for sub in module.modules():
        hook = getattr(sub, "_hf_hook", None)
        stack = list(hook.hooks) if isinstance(hook, SequentialHook) else [hook]
        found.extend(h for h in stack if isinstance(h, AlignDevicesHook))
    return found


class CpuOffload(ModelHook):
    """Keep a model on CPU until its forward; then move it (whole) to ``execution_device``.

    It stays there after the forward; ``init_hook`` (or :meth:`UserCpuOffloadHook.offload`)
    sends it back. ``prev_module_hook`` offloads the previous model of a pipeline first.

    Example:
        >>> m = add_hook_to_module(nn.Linear(2, 2), CpuOffload("cpu"))
        >>> m(torch.ones(1, 2)).device.type
        'cpu'
    """

    def __init__(
        self,
        execution_device: Device | None = None,
        prev_module_hook: UserCpuOffloadHook | None = None,
    ) -> None:
        self.prev_module_hook = prev_module_hook
        if execution_device is None:
            from accel.state import PartialState

            execution_device = PartialState().default_device
        self.execution_device = execution_device

    def init_hook(self, module: nn.Module) -> nn.Module:
        return module.to("cpu")

    @_eager
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        if isinstance(self.prev_module_hook, UserCpuOffloadHook):
            previous = next(self.prev_module_hook.model.parameters(), None)
            if previous is not None and previous.device != torch.device("cpu"):
                self.prev_module_hook.offload()
                _clear_device_cache(previous.device)
        current = next(module.parameters(), None)
        if current is not None and current.device == torch.device(self.execution_device):
            return args, kwargs
        module.to(self.execution_device)
        return send_to_device(args, self.execution_device), send_to_device(
            kwargs, self.execution_device
        )


class UserCpuOffloadHook:
    """A model and its :class:`CpuOffload` hook, with :meth:`offload` and :meth:`remove`.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> hook = UserCpuOffloadHook(m, add_hook_to_module(m, CpuOffload("cpu"))._hf_hook)
        >>> hook.offload(); hook.remove()
    """

    def __init__(self, model: nn.Module, hook: ModelHook) -> None:
        self.model = model
        self.hook = hook

    def offload(self) -> None:
        """Send the model back to CPU."""
        self.hook.init_hook(self.model)

    def remove(self) -> None:
        """Remove the hook from the model."""
        remove_hook_from_module(self.model)
