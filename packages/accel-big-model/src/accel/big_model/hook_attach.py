"""Attaching :class:`~accel.big_model.align_hook.AlignDevicesHook` objects down a module tree.

The public functions keep Accelerate's signatures; what every hook of one call shares (weights
map, buffer offload, skipped keys, preloaded classes, tied weights, prefetcher) travels down the
tree as one :class:`HookSettings`.

Example:
    >>> m = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> attach_align_device_hook(m, "cpu", offload=True, weights_map=m.state_dict())
    >>> m[0].weight.device.type
    'meta'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from accel.big_model.align_hook import AlignDevicesHook
from accel.big_model.hooks import add_hook_to_module, hook_of
from accel.big_model.offload import PrefixedDataset
from accel.big_model.prefetch import OffloadPrefetcher
from accel.big_model.tensors import TiedParamsMap, named_module_tensors

Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias
SkipKeys = Union[str, list[str], None]  # noqa: UP007 - runtime alias


@dataclass(frozen=True)
class HookSettings:
    """What every hook attached by one call shares, passed down the module tree as one value.

    - ``weights_map``: the whole model's offloaded weights (each hook sees its own prefix).
    - ``offload_buffers``: offload buffers too.
    - ``skip_keys``: keys of dict inputs/outputs never moved.
    - ``preload_module_classes``: classes whose submodules' weights load at once, in one hook.
    - ``tied_params_map``: ``{data_ptr: {device: parameter}}`` so a tied weight is placed once.
    - ``prefetcher``: loads the next offloaded module's weights in the background.

    Example:
        >>> HookSettings(preload_module_classes=["Block"]).preloads(nn.Linear(1, 1))
        False
    """

    weights_map: Mapping[str, torch.Tensor] | None = None
    offload_buffers: bool = False
    skip_keys: SkipKeys = None
    preload_module_classes: list[str] | None = None
    tied_params_map: TiedParamsMap | None = None
    prefetcher: OffloadPrefetcher | None = None

    def preloads(self, module: nn.Module) -> bool:
        """Whether ``module``'s class is one of ``preload_module_classes``."""
        classes = self.preload_module_classes
        return classes is not None and type(module).__name__ in classes

    def without_preload(self) -> HookSettings:
        """These settings with no ``preload_module_classes``."""
        return dataclasses.replace(self, preload_module_classes=None)


def _child_name(module_name: str, child_name: str) -> str:
    return f"{module_name}.{child_name}" if module_name else child_name


def _attach_execution(module: nn.Module, device: Device, settings: HookSettings) -> None:
    if hook_of(module) is None and len(module.state_dict()) > 0:
        hook = AlignDevicesHook(
            device, skip_keys=settings.skip_keys, tied_params_map=settings.tied_params_map
        )
        add_hook_to_module(module, hook)
    if settings.preloads(module):
        return
    for child in module.children():
        _attach_execution(child, device, settings)


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
    settings = HookSettings(
        skip_keys=skip_keys,
        preload_module_classes=preload_module_classes,
        tied_params_map=tied_params_map,
    )
    _attach_execution(module, execution_device, settings)


def _attach_align(
    module: nn.Module,
    module_name: str,
    execution_device: Device | None,
    offload: bool,
    settings: HookSettings,
) -> None:
    full_offload = offload and settings.preloads(module)
    if full_offload or any(True for _ in named_module_tensors(module)):
        prefixed = None
        if settings.weights_map is not None:
            prefix = f"{module_name}." if module_name else ""
            prefixed = PrefixedDataset(settings.weights_map, prefix)
        hook = AlignDevicesHook(
            execution_device=execution_device,
            offload=offload,
            weights_map=prefixed,
            offload_buffers=settings.offload_buffers,
            place_submodules=full_offload,
            skip_keys=settings.skip_keys,
            tied_params_map=settings.tied_params_map,
            prefetcher=settings.prefetcher if offload else None,
        )
        add_hook_to_module(module, hook, append=True)
    if full_offload:
        return
    for child_name, child in module.named_children():
        _attach_align(
            child, _child_name(module_name, child_name), execution_device, offload, settings
        )


def attach_align_device_hook(
    module: nn.Module,
    execution_device: Device | None = None,
    offload: bool = False,
    weights_map: Mapping[str, torch.Tensor] | None = None,
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
    settings = HookSettings(
        weights_map=weights_map,
        offload_buffers=offload_buffers,
        skip_keys=skip_keys,
        preload_module_classes=preload_module_classes,
        tied_params_map=tied_params_map,
        prefetcher=prefetcher,
    )
    _attach_align(module, module_name, execution_device, offload, settings)


def _attach_block(
    module: nn.Module,
    module_name: str,
    execution_device: Mapping[str, Device],
    offload: Mapping[str, bool],
    settings: HookSettings,
) -> None:
    """One step of :func:`attach_align_device_hook_on_blocks` with both maps keyed by name."""
    root = module_name == ""
    if module_name in execution_device and module_name in offload:
        device = execution_device[module_name]
        if not offload[module_name]:
            hook = AlignDevicesHook(
                execution_device=device,
                offload_buffers=settings.offload_buffers,
                io_same_device=root,
                place_submodules=True,
                skip_keys=settings.skip_keys,
                tied_params_map=settings.tied_params_map,
                prefetcher=settings.prefetcher if root else None,
            )
            add_hook_to_module(module, hook)
            _attach_execution(module, device, settings.without_preload())
        else:
            _attach_align(module, module_name, device, True, settings)
            if hook_of(module) is None:
                hook = AlignDevicesHook(
                    execution_device=device,
                    io_same_device=root,
                    skip_keys=settings.skip_keys,
                    tied_params_map=settings.tied_params_map,
                    prefetcher=settings.prefetcher if root else None,
                )
                add_hook_to_module(module, hook)
            _attach_execution(module, device, settings)
    elif root:
        hook = AlignDevicesHook(
            execution_device=execution_device.get(""),
            io_same_device=True,
            skip_keys=settings.skip_keys,
            tied_params_map=settings.tied_params_map,
            prefetcher=settings.prefetcher,
        )
        add_hook_to_module(module, hook)
    for child_name, child in module.named_children():
        _attach_block(
            child, _child_name(module_name, child_name), execution_device, offload, settings
        )


def attach_align_device_hook_on_blocks(
    module: nn.Module,
    execution_device: Device | Mapping[str, Device] | None = None,
    offload: bool | Mapping[str, bool] = False,
    weights_map: Mapping[str, torch.Tensor] | None = None,
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
    settings = HookSettings(
        weights_map=weights_map,
        offload_buffers=offload_buffers,
        skip_keys=skip_keys,
        preload_module_classes=preload_module_classes,
        tied_params_map=tied_params_map,
        prefetcher=prefetcher,
    )
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
            _attach_align(module, module_name, execution_device, True, settings.without_preload())
        return
    devices: Mapping[str, Any]
    offloads: Mapping[str, bool]
    if isinstance(execution_device, Mapping):
        devices = execution_device
        offloads = offload if isinstance(offload, Mapping) else dict.fromkeys(devices, offload)
    else:
        offloads = offload if isinstance(offload, Mapping) else {}
        devices = dict.fromkeys(offloads, execution_device)
    _attach_block(module, module_name, devices, offloads, settings)
