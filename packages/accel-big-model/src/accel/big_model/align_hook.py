"""The hook that keeps weights and inputs together: :class:`AlignDevicesHook`.

It moves inputs to the execution device and, for offloaded modules, brings the weights in
from their weights map before the forward and drops them back to the meta device after it.
With an :class:`~accel.big_model.prefetch.OffloadPrefetcher`, the next offloaded module's
weights load in a background thread meanwhile.

Example:
    >>> from accel.big_model.hooks import add_hook_to_module
    >>> lin = add_hook_to_module(nn.Linear(2, 2), AlignDevicesHook("cpu", offload=True))
    >>> lin.weight.device.type, lin(torch.ones(1, 2)).shape
    ('meta', torch.Size([1, 2]))
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Union

import torch
from torch import nn

from accel.big_model.hooks import (
    ModelHook,
    SequentialHook,
    hook_of,
    outside_compile,
)
from accel.big_model.prefetch import OffloadPrefetcher, touch
from accel.big_model.tensors import (
    TiedParamsMap,
    get_non_persistent_buffers,
    named_module_tensors,
    set_module_tensor_to_device,
)
from accel.ops.structures import find_device, send_to_device

Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias
SkipKeys = Union[str, list[str], None]  # noqa: UP007 - runtime alias
#: ``{name: (tensor from the weights map, tensor ready on the execution device)}``
Fetched = dict[str, tuple[torch.Tensor, torch.Tensor]]


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
        >>> from accel.big_model.hooks import add_hook_to_module
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
        weights_map: Mapping[str, torch.Tensor] | None = None,
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
        self.tied_pointers_to_remove: set[tuple[int, Device | None]] = set()
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

    def _fetch(self, wanted: list[tuple[str, torch.dtype]], background: bool = False) -> Fetched:
        """``{name: (value from the weights map, value ready on the execution device)}``."""
        device = self.execution_device
        weights_map = self.weights_map
        if weights_map is None:
            raise RuntimeError(
                "AlignDevicesHook(offload=True) has no weights_map: it is set when the hook is "
                "attached (add_hook_to_module) or passed as weights_map="
            )
        fetched: Fetched = {}
        for name, dtype in wanted:
            value = weights_map[name]
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

    def prefetch_job(self) -> Callable[[], Fetched] | None:
        """A callable loading this hook's weights, for the prefetch thread (``None``: nothing)."""
        module = None if self._module is None else self._module()
        if module is None or not self.offload or self.weights_map is None:
            return None
        wanted = self._wanted(module)
        return functools.partial(self._fetch, wanted, True)

    def _install(self, module: nn.Module, fetched: Fetched) -> None:
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
                tied[pointer].setdefault(device, owner.get_parameter(leaf))

    @outside_compile
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

    @outside_compile
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        if self.offload:
            for name, _ in self._offloaded_tensors(module):
                set_module_tensor_to_device(module, name, "meta")
            tied = self.tied_params_map
            if tied is not None:
                for pointer, device in self.tied_pointers_to_remove:
                    tied.get(pointer, {}).pop(device, None)
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


def align_device_hooks_of(hook: ModelHook | None) -> list[AlignDevicesHook]:
    """The :class:`AlignDevicesHook` objects in ``hook`` (itself, or inside a
    :class:`SequentialHook`).

    Example:
        >>> align_device_hooks_of(SequentialHook(ModelHook(), AlignDevicesHook("cpu")))
        [AlignDevicesHook(execution_device=cpu, offload=False, io_same_device=False, offload_buffers=False, place_submodules=False, skip_keys=None)]
    """
    stack = list(hook.hooks) if isinstance(hook, SequentialHook) else [hook]
    return [h for h in stack if isinstance(h, AlignDevicesHook)]


def align_device_hooks(module: nn.Module) -> list[AlignDevicesHook]:
    """The :class:`AlignDevicesHook` objects attached to ``module`` and its submodules, in
    module order (unwrapping :class:`SequentialHook`).

    Example:
        >>> m = nn.Sequential(nn.Linear(1, 1))
        >>> from accel.big_model.hooks import add_hook_to_module
        >>> _ = add_hook_to_module(m[0], AlignDevicesHook("cpu"))
        >>> align_device_hooks(m)
        [AlignDevicesHook(execution_device=cpu, offload=False, io_same_device=False, offload_buffers=False, place_submodules=False, skip_keys=None)]
    """
    return [found for sub in module.modules() for found in align_device_hooks_of(hook_of(sub))]
