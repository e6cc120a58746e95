"""Offloading a whole model: every weight kept in CPU memory or on disk, each module bringing
its own to the execution device for its forward (:func:`cpu_offload`, :func:`disk_offload`),
or the whole model moved per call (:func:`cpu_offload_with_hook`).

Example:
    >>> model, hook = cpu_offload_with_hook(nn.Linear(2, 2), "cpu")
    >>> model(torch.ones(1, 2)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Union

import torch
from torch import nn

from accel.big_model.align_hook import AlignDevicesHook
from accel.big_model.cpu_offload_hooks import CpuOffload, UserCpuOffloadHook
from accel.big_model.hook_attach import attach_align_device_hook
from accel.big_model.hooks import add_hook_to_module
from accel.big_model.offload import INDEX_NAME, OffloadedWeightsLoader, offload_state_dict
from accel.big_model.offload_resources import new_prefetcher, setup_prefetch

PathLike = Union[str, "os.PathLike[str]"]
Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias


def _first_param_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    if param is None or param.device.type == "meta":
        return torch.device("cpu")
    return param.device


def _offload_whole_model(
    model: nn.Module,
    execution_device: Device,
    weights_map: Mapping[str, torch.Tensor],
    offload_buffers: bool,
    preload_module_classes: list[str] | None,
    prefetch: bool | None,
) -> nn.Module:
    """Hook every submodule of ``model`` to load its weights from ``weights_map`` when run."""
    prefetcher = new_prefetcher(prefetch)
    add_hook_to_module(model, AlignDevicesHook(io_same_device=True), append=True)
    attach_align_device_hook(
        model,
        execution_device=execution_device,
        offload=True,
        offload_buffers=offload_buffers,
        weights_map=weights_map,
        preload_module_classes=preload_module_classes,
        prefetcher=prefetcher,
    )
    setup_prefetch(model, prefetcher)
    return model


def cpu_offload(
    model: nn.Module,
    execution_device: Device | None = None,
    offload_buffers: bool = False,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    preload_module_classes: list[str] | None = None,
    prefetch: bool | None = None,
) -> nn.Module:
    """Keep all weights in one CPU state dict; each module brings its weights to
    ``execution_device`` (default: the model's current device) for its forward only.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> expected = model(torch.ones(1, 2))
        >>> model = cpu_offload(model, "cpu")
        >>> torch.equal(model(torch.ones(1, 2)), expected)
        True
    """
    if execution_device is None:
        execution_device = _first_param_device(model)
    if state_dict is None:
        state_dict = {name: t.to("cpu") for name, t in model.state_dict().items()}
    return _offload_whole_model(
        model, execution_device, state_dict, offload_buffers, preload_module_classes, prefetch
    )


def cpu_offload_with_hook(
    model: nn.Module,
    execution_device: Device | None = None,
    prev_module_hook: UserCpuOffloadHook | None = None,
) -> tuple[nn.Module, UserCpuOffloadHook]:
    """Keep ``model`` on CPU until called, then on ``execution_device`` until
    ``hook.offload()`` (for pipelines calling one model many times in a row).

    Example:
        >>> model, hook = cpu_offload_with_hook(nn.Linear(2, 2), "cpu")
        >>> model(torch.ones(1, 2)).shape
        torch.Size([1, 2])
        >>> hook.offload()
    """
    hook = CpuOffload(execution_device=execution_device, prev_module_hook=prev_module_hook)
    add_hook_to_module(model, hook, append=True)
    return model, UserCpuOffloadHook(model, hook)


def disk_offload(
    model: nn.Module,
    offload_dir: PathLike,
    execution_device: Device | None = None,
    offload_buffers: bool = False,
    preload_module_classes: list[str] | None = None,
    prefetch: bool | None = None,
) -> nn.Module:
    """Offload all weights to ``offload_dir`` (written there unless it already holds an
    ``index.json``) and read each module's weights from it for its forward.

    Example:
        >>> import tempfile
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> expected = model(torch.ones(1, 2))
        >>> model = disk_offload(model, tempfile.mkdtemp(), "cpu")
        >>> torch.equal(model(torch.ones(1, 2)), expected)
        True
    """
    if not os.path.isfile(os.path.join(offload_dir, INDEX_NAME)):
        offload_state_dict(offload_dir, model.state_dict())
    if execution_device is None:
        execution_device = _first_param_device(model)
    weights_map = OffloadedWeightsLoader(save_folder=offload_dir)
    return _offload_whole_model(
        model, execution_device, weights_map, offload_buffers, preload_module_classes, prefetch
    )
