"""Listing a module's tensors and moving one of them in place (parameter or buffer)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from torch import nn

from accel.big_model.dtypes import as_dtype, keeps_own_dtype
from accel.state.availability import is_npu_available, is_xpu_available

Device = int | str | torch.device
#: ``{data_ptr of a tied weight: {device: the parameter placed there}}``: a tied weight is
#: placed once per device and shared by every module that holds it.
TiedParamsMap = dict[int, dict[Any, nn.Parameter]]


def get_non_persistent_buffers(
    module: nn.Module, recurse: bool = False, fqns: bool = False
) -> set[str]:
    """Names of the buffers of ``module`` that are not saved in its ``state_dict``.

    With ``recurse`` the buffers of submodules are included, named by their full dotted name
    when ``fqns`` is true (otherwise by their local name, as Accelerate does).

    Example:
        >>> m = nn.Module()
        >>> m.register_buffer("cache", torch.zeros(2), persistent=False)
        >>> get_non_persistent_buffers(m)
        {'cache'}
    """
    names = set(module._non_persistent_buffers_set)
    if recurse:
        for prefix, sub in module.named_modules():
            if fqns and prefix:
                names |= {f"{prefix}.{b}" for b in sub._non_persistent_buffers_set}
            else:
                names |= set(sub._non_persistent_buffers_set)
    return names


def named_module_tensors(
    module: nn.Module,
    include_buffers: bool = True,
    recurse: bool = False,
    remove_non_persistent: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters, then buffers (``include_buffers``), of ``module`` with their names.

    ``recurse`` descends into submodules (names become dotted paths); tied tensors appear once.
    ``remove_non_persistent`` skips buffers registered with ``persistent=False``.

    Example:
        >>> [n for n, _ in named_module_tensors(nn.BatchNorm1d(2))]
        ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    """
    yield from module.named_parameters(recurse=recurse)
    if not include_buffers:
        return
    skip: set[str] = set()
    if remove_non_persistent:
        skip = get_non_persistent_buffers(module, recurse=recurse, fqns=True)
    for name, buffer in module.named_buffers(recurse=recurse):
        if name not in skip:
            yield name, buffer


def _owner(module: nn.Module, tensor_name: str) -> tuple[nn.Module, str]:
    *path, leaf = tensor_name.split(".")
    owner = module
    for depth, part in enumerate(path):
        child = getattr(owner, part, None)
        if not isinstance(child, nn.Module):
            where = ".".join(path[: depth + 1])
            raise ValueError(
                f"cannot set tensor {tensor_name!r}: the model has no submodule {where!r}"
            )
        owner = child
    if leaf not in owner._parameters and leaf not in owner._buffers:
        known = sorted(list(owner._parameters) + list(owner._buffers))
        raise ValueError(
            f"cannot set tensor {tensor_name!r}: {type(owner).__name__} has no parameter or "
            f"buffer named {leaf!r} (it has: {', '.join(known) or 'none'})"
        )
    return owner, leaf


def torch_device(device: Device) -> Device:
    """``device`` as ``Tensor.to`` reads it: an integer ordinal names the accelerator present
    (``npu:N``, ``xpu:N``; a bare integer means CUDA to torch).

    Example:
        >>> torch_device("cpu")
        'cpu'
    """
    if isinstance(device, int) and not isinstance(device, bool):
        if is_npu_available():
            return f"npu:{device}"
        if is_xpu_available():
            return f"xpu:{device}"
    return device


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    return (a.index or 0) == (b.index or 0) if a.type != "cpu" else True


def clear_device_cache(device: Device) -> None:
    """Return the cached free memory of ``device``'s backend to it (``empty_cache``); CPU,
    meta and disk have none.

    Example:
        >>> clear_device_cache("cpu")
    """
    kind = torch.device(device).type if not isinstance(device, int) else "cuda"
    backend = getattr(torch, kind, None) if kind not in ("cpu", "meta", "disk") else None
    if backend is not None and hasattr(backend, "empty_cache"):
        with contextlib.suppress(Exception):
            backend.empty_cache()


def _new_parameter(
    old: nn.Parameter | None, data: torch.Tensor, device: Device, non_blocking: bool
) -> nn.Parameter:
    if old is None or type(old) is nn.Parameter:
        return nn.Parameter(
            data.to(device, non_blocking=non_blocking),
            requires_grad=True if old is None else old.requires_grad,
        )
    # A Parameter subclass (bitsandbytes' Params4bit...) takes its extra state as keywords
    # and keeps its class through .to().
    cls: Callable[..., nn.Parameter] = type(old)
    extra = {k: v for k, v in old.__dict__.items() if k != "_is_hf_initialized"}
    try:
        new = cls(data, requires_grad=old.requires_grad, **extra)
    except TypeError:
        new = cls(data, requires_grad=old.requires_grad)
    new = cast(nn.Parameter, new.to(device, non_blocking=non_blocking))
    if "_is_hf_initialized" in old.__dict__:
        vars(new)["_is_hf_initialized"] = old.__dict__["_is_hf_initialized"]
    return new


def set_module_tensor_to_device(
    module: nn.Module,
    tensor_name: str,
    device: Device,
    value: torch.Tensor | None = None,
    dtype: str | torch.dtype | None = None,
    fp16_statistics: torch.Tensor | None = None,
    tied_params_map: TiedParamsMap | None = None,
    non_blocking: bool = False,
    clear_cache: bool = True,
) -> None:
    """Put parameter or buffer ``tensor_name`` (a dotted path) of ``module`` on ``device``.

    ``param.to(device)`` would create a tensor the module does not own; this replaces the
    module's entry instead, keeping the parameter class and ``requires_grad``.

    - ``value``: the new content (required when the tensor is on the meta device and
      ``device`` is not). Its shape must match. It is cast to the current dtype of the tensor,
      or to ``dtype`` when given (integer and boolean values are never cast).
    - ``dtype`` without ``value``: the tensor itself is cast (floating point only).
    - ``fp16_statistics``: stored as the ``SCB`` attribute (8-bit serialisation).
    - ``tied_params_map``: ``{data_ptr: {device: tensor}}``; a tied weight already placed on
      ``device`` is reused instead of copied, and newly placed ones are recorded.

    Example:
        >>> lin = nn.Linear(2, 2, device="meta")
        >>> set_module_tensor_to_device(lin, "weight", "cpu", value=torch.ones(2, 2))
        >>> lin.weight.device.type, isinstance(lin.weight, nn.Parameter)
        ('cpu', True)
    """
    owner, name = _owner(module, tensor_name)
    is_buffer = name in owner._buffers
    old = getattr(owner, name)

    if tied_params_map is not None:
        for source in (value, old):
            if source is None:
                continue
            placed = tied_params_map.get(source.data_ptr(), {})
            if device in placed:
                owner._parameters[name] = placed[device]
                return

    if old.device.type == "meta" and str(device) != "meta" and value is None:
        raise ValueError(
            f"{tensor_name!r} is on the meta device (no data); pass value= to put it on {device!r}"
        )
    if dtype is not None and isinstance(dtype, str):
        dtype = as_dtype(dtype)

    param = owner._parameters.get(name)
    if value is not None:
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(value)
        if old.shape != value.shape and type(param).__name__ != "Params4bit":
            raise ValueError(
                f"cannot set {tensor_name!r}: value has shape {tuple(value.shape)} but the "
                f"model's tensor has shape {tuple(old.shape)}"
            )
        if dtype is None:
            value = value.to(old.dtype, non_blocking=non_blocking)
        elif not keeps_own_dtype(value.dtype):
            value = value.to(dtype, non_blocking=non_blocking)

    target = torch_device(device)
    with torch.no_grad():
        if value is None:
            new_value = old.to(target, non_blocking=non_blocking)
            if dtype is not None and not keeps_own_dtype(old.dtype):
                new_value = new_value.to(dtype, non_blocking=non_blocking)
        else:
            new_value = value.to(target, non_blocking=non_blocking)

        if is_buffer:
            owner._buffers[name] = new_value
        else:
            changed = (
                value is not None
                or new_value.dtype != old.dtype
                or not _same_device(torch.device(target), old.device)
            )
            if changed:
                owner._parameters[name] = _new_parameter(param, new_value, target, non_blocking)
            if fp16_statistics is not None:
                statistics = fp16_statistics.to(target, non_blocking=non_blocking)
                setattr(owner._parameters[name], "SCB", statistics)  # noqa: B010 - bnb attribute

    if clear_cache and str(device) not in ("cpu", "meta"):
        clear_device_cache(target)

    placed_now = None if is_buffer else owner._parameters[name]
    if tied_params_map is not None and placed_now is not None:  # tied weights are parameters
        for source in (old, value):
            if source is not None and source.data_ptr() in tied_params_map:
                tied_params_map[source.data_ptr()].setdefault(device, placed_now)
                break
