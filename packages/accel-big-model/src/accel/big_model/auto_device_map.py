"""Planning a device map: which device holds each submodule of a model too big for one.

:func:`infer_auto_device_map` fills accelerators in order, then the CPU, then disk, splitting
modules that do not fit; it reads only shapes and dtypes, so models on the meta device work.

Example:
    >>> clean_device_map({"h.0": 0, "h.1": 0, "lm_head": "cpu"})
    {'lm_head': 'cpu', 'h': 0}
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from accel.big_model.sizes import (
    MemoryBudget,
    compute_module_sizes,
    compute_module_total_buffer_size,
    convert_file_size_to_int,
    format_size,
    get_max_layer_size,
    get_max_memory,
)
from accel.big_model.tied import find_tied_parameters
from accel.state.process_logging import library_logger

logger = library_logger("accel.big_model.device_map")

DeviceMap = dict[str, int | str | torch.device]
Entry = tuple[str, nn.Module | torch.Tensor]


def no_split_list(no_split_module_classes: str | Iterable[str] | None) -> list[str]:
    """``no_split_module_classes`` as a list of class names (one name, several, or none).

    Example:
        >>> no_split_list("Block"), no_split_list(None)
        (['Block'], [])
    """
    if no_split_module_classes is None:
        return []
    if isinstance(no_split_module_classes, str):
        return [no_split_module_classes]
    return list(no_split_module_classes)


def _inside(name: str, scope: str) -> bool:
    """Whether tensor/module ``name`` is ``scope`` or lies under it."""
    return scope == "" or name == scope or name.startswith(scope + ".")


def _children(module: nn.Module | torch.Tensor) -> list[tuple[str, nn.Module | torch.Tensor]]:
    """What a module splits into: its own parameters, submodules, and own buffers."""
    children: list[tuple[str, nn.Module | torch.Tensor]] = []
    if isinstance(module, nn.Module):
        children.extend(module.named_parameters(recurse=False))
        children.extend(module.named_children())
        children.extend(module.named_buffers(recurse=False))
    return children


def _splittable(module: nn.Module | torch.Tensor, no_split: list[str]) -> bool:
    return (
        isinstance(module, nn.Module)
        and module.__class__.__name__ not in no_split
        and any(True for _ in module.children())
    )


def clean_device_map(device_map: DeviceMap, module_name: str = "") -> DeviceMap:
    """Merge, recursively and in place, the entries under a module that share one device.

    Example:
        >>> clean_device_map({"a.x": 0, "a.y": 0, "b": "cpu"})
        {'b': 'cpu', 'a': 0}
    """
    prefix = f"{module_name}." if module_name else ""
    keys = [k for k in device_map if k.startswith(prefix)]
    values = {str(device_map[k]) for k in keys}
    if len(keys) > 1 and len(values) == 1:
        device = device_map[keys[0]]
        for k in keys:
            del device_map[k]
        device_map[module_name] = device
        return device_map
    depth = len(module_name.split(".")) + 1 if module_name else 1
    children = [".".join(k.split(".")[:depth]) for k in keys if len(k) > len(module_name)]
    for child in dict.fromkeys(children):
        clean_device_map(device_map, child)
    return device_map


def _offloads(device_map: Mapping[str, Any], gpus: list[Any]) -> bool:
    """Whether executing with ``device_map`` streams weights from an offload device."""
    offload_devices = ("cpu", "disk") if gpus else ("disk",)
    return any(str(v) in offload_devices for v in device_map.values())


@dataclass
class _Plan:
    """State of one greedy allocation pass (see :func:`infer_auto_device_map`)."""

    model: nn.Module
    max_memory: dict[Any, int]
    no_split: list[str]
    module_sizes: Mapping[str, float]
    tied: list[list[str]]
    reserve: bool
    allow_disk: bool
    verbose: bool
    fallback: bool
    devices: list[Any] = field(default_factory=list)
    main_devices: list[Any] = field(default_factory=list)
    used: dict[Any, float] = field(default_factory=dict)
    device_map: DeviceMap = field(default_factory=OrderedDict)
    assigned_modules: list[tuple[str, Any, Any]] = field(default_factory=list)
    minimum_needed: dict[Any, float] = field(default_factory=dict)

    def say(self, message: str) -> None:
        if self.verbose:
            print(message)

    def outside_ties(self, name: str) -> list[str]:
        """Tied names outside ``name`` whose tensor is also inside it."""
        outside: list[str] = []
        for group in self.tied:
            inner = [p for p in group if _inside(p, name)]
            if inner and len(inner) < len(group):
                outside.extend(p for p in group if not _inside(p, name))
        return outside

    def size_with_ties(
        self, name: str, tied_outside: list[str], queue: list[Entry]
    ) -> tuple[float, list[str], list[Any]]:
        size = self.module_sizes[name]
        names: list[str] = []
        modules: list[Any] = []
        for tied_name in tied_outside:
            holder = next(((n, m) for n, m in queue if _inside(tied_name, n)), None)
            if holder is None:  # already placed: its bytes are counted where it went
                continue
            if holder[0] not in names:
                names.append(holder[0])
                modules.append(holder[1])
                size += self.module_sizes[holder[0]]
            size -= self.module_sizes.get(tied_name, 0)
        return size, names, modules

    def largest_layer(self, queue: list[Entry]) -> tuple[float, list[str]]:
        if not self.reserve:
            return 0, []
        modules = [(n, m) for n, m in queue if isinstance(m, nn.Module)]
        return get_max_layer_size(modules, self.module_sizes, self.no_split)

    def run(self, queue: list[Entry]) -> DeviceMap:
        max_layer, max_layer_names = self.largest_layer(queue)
        index = 0
        while queue:
            name, module = queue.pop(0)
            self.say(f"\nTreating module {name}.")
            max_layer_names = [n for n in max_layer_names if not _inside(n, name)]
            if not max_layer_names:
                max_layer, max_layer_names = self.largest_layer(queue)
            size = self.module_sizes[name]
            tied_outside = self.outside_ties(name)
            device = self.devices[index]
            if device == "disk" and not self.allow_disk:
                raise ValueError(
                    self._no_room_message(name, module, size, max_layer, max_layer_names)
                )
            limit = None if device == "disk" else self.max_memory[device]
            reserved = 0.0
            if limit is not None and device in self.main_devices:
                limit -= max_layer
                reserved = max_layer
            total, tied_names, tied_modules = self.size_with_ties(name, tied_outside, queue)
            used = self.used[device]

            if limit is None or used + total <= limit:
                self.say(f"Putting {name} {tied_names or ''} (size={total}) on {device}.")
                self.used[device] += total
                self.device_map[name] = device
                self.assigned_modules.append((name, module, device))
                for tied_name in tied_names:
                    queue[:] = [(n, m) for n, m in queue if n != tied_name]
                    self.device_map[tied_name] = device
                continue

            if tied_outside and used + size <= limit:
                # The module fits alone: split a tied module so that only the tied part follows.
                for tied_name, tied_module in zip(tied_names, tied_modules):
                    if not _splittable(tied_module, self.no_split):
                        continue
                    self.say(f"Splitting tied module {tied_name}.")
                    position = next(i for i, (n, _) in enumerate(queue) if n == tied_name)
                    parts = [(f"{tied_name}.{n}", v) for n, v in _children(tied_module)]
                    queue[:] = [(name, module), *queue[:position], *parts, *queue[position + 1 :]]
                    max_layer, max_layer_names = self.largest_layer(queue)
                    break
                else:
                    parts = None
                if parts is not None:
                    continue

            if used + size >= limit and _splittable(module, self.no_split):
                self.say(f"Splitting {name} (needs {size}, {limit - used} left on {device}).")
                queue[:0] = [(f"{name}.{n}", v) for n, v in _children(module)]
                max_layer, max_layer_names = self.largest_layer(queue)
                continue

            if used == 0 and self.fallback:
                budget = self.max_memory[device] - max(max_layer, total)
                found = fallback_allocate(
                    queue, self.module_sizes, budget, self.no_split, self.tied
                )
                if found[0] is not None:
                    queue[:] = [(found[0], found[1]), (name, module), *found[2]]
                    continue

            if used == 0:
                self.minimum_needed[device] = total + reserved
            self.say(f"{name} does not fit on {device}; moving to the next device.")
            self.used[device] += reserved
            index += 1
            queue.insert(0, (name, module))
        return self.device_map

    def _no_room_message(
        self, name: str, module: Any, size: float, max_layer: float, layer_names: list[str]
    ) -> str:
        kind = type(module).__name__
        budgets = ", ".join(
            f"{d}: {format_size(self.max_memory[d])} ({format_size(self.used[d])} used)"
            for d in self.devices
            if d != "disk"
        )
        reserve = ""
        if max_layer:
            reserve = (
                f" The main devices {self.main_devices} also keep {format_size(max_layer)} free "
                f"for the largest offloaded layer ({', '.join(layer_names)})."
            )
        return (
            f"{name!r} ({kind}, {format_size(size)}) fits on no device and disk offload is not "
            f"allowed. Budgets: {budgets}.{reserve} Raise max_memory, use a smaller dtype, or "
            f"allow disk offload (pass an offload folder)."
        )


def fallback_allocate(
    modules: list[Entry],
    module_sizes: Mapping[str, float],
    size_limit: int | float | str,
    no_split_module_classes: list[str] | None = None,
    tied_parameters: list[list[str]] | None = None,
) -> tuple[str | None, Any, list[Entry]]:
    """Breadth-first search of ``modules`` for a piece no larger than ``size_limit``.

    Returns ``(name, module, remaining modules)`` with the parents of the piece split in
    ``remaining``, or ``(None, None, modules)`` when nothing fits.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.Linear(2, 2))
        >>> sizes = compute_module_sizes(model)
        >>> fallback_allocate(list(model.named_children()), sizes, 50)[0]
        '1'
    """
    try:
        limit = convert_file_size_to_int(size_limit)
    except ValueError:
        return None, None, modules
    no_split = no_split_module_classes or []
    helper = _Plan(
        nn.Module(), {}, no_split, module_sizes, tied_parameters or [], False, True, False, False
    )
    pending = list(modules)
    found: Entry | None = None
    while pending:
        name, module = pending.pop(0)
        total, _, _ = helper.size_with_ties(name, helper.outside_ties(name), pending)
        if total <= limit:
            found = (name, module)
            break
        if _splittable(module, no_split):
            pending[:0] = [(f"{name}.{n}", v) for n, v in _children(module)]
    if found is None:
        return None, None, modules
    name = found[0]
    remaining = list(modules)
    while name not in [n for n, _ in remaining]:
        position, (parent, parent_module) = next(
            (i, e) for i, e in enumerate(remaining) if _inside(name, e[0])
        )
        parts = [(f"{parent}.{n}", v) for n, v in _children(parent_module)]
        remaining[position : position + 1] = parts
    position = next(i for i, (n, _) in enumerate(remaining) if n == name)
    return (*remaining.pop(position), remaining)


def infer_auto_device_map(
    model: nn.Module,
    max_memory: MemoryBudget | None = None,
    no_split_module_classes: str | list[str] | None = None,
    dtype: str | torch.dtype | None = None,
    special_dtypes: Mapping[str, str | torch.dtype] | None = None,
    verbose: bool = False,
    clean_result: bool = True,
    offload_buffers: bool = False,
    fallback_allocation: bool = False,
    *,
    headroom: float | None = None,
    allow_disk: bool = True,
) -> DeviceMap:
    """Map the submodules of ``model`` to devices: accelerators in order, then CPU, then disk.

    Modules are taken in definition order and placed on the current device while they fit in
    its budget; a module that does not fit is split into its children (unless its class is in
    ``no_split_module_classes`` or it has none), otherwise the next device is used. Tied
    parameters go with the module that holds their first name. When anything ends up
    offloaded, the main devices (the first accelerator, and the CPU for disk offload) keep room
    for the largest layer that may be streamed in.

    ``max_memory`` (e.g. ``{0: "10GiB", "cpu": "30GiB"}``) defaults to the measured free
    memory minus 10% of each accelerator (``headroom``, see :func:`get_max_memory`); integer
    keys work without the GPUs present, for planning. ``allow_disk=False`` raises a
    ``ValueError`` naming the module that fits nowhere instead of mapping it to ``"disk"``.

    Example:
        >>> from accel.big_model.init import init_empty_weights
        >>> with init_empty_weights():
        ...     model = nn.Sequential(*[nn.Linear(100, 100) for _ in range(4)])
        >>> dict(infer_auto_device_map(model, max_memory={0: 90_000, 1: 90_000, "cpu": 10**6}))
        {'0': 0, '1': 0, '2': 1, '3': 1}
    """
    max_memory = get_max_memory(max_memory, headroom=headroom)
    no_split = no_split_list(no_split_module_classes)
    devices = list(max_memory)
    if "disk" not in devices:
        devices.append("disk")
    gpus = [d for d in devices if d not in ("cpu", "disk")]
    if "mps" in gpus:
        main_devices: list[Any] = ["mps"]
    elif gpus:
        main_devices = [gpus[0], "cpu"]
    else:
        main_devices = ["cpu"]
    module_sizes = compute_module_sizes(model, dtype=dtype, special_dtypes=special_dtypes)
    tied = find_tied_parameters(model)

    def plan(reserve: bool, quiet: bool) -> _Plan:
        state = _Plan(
            model,
            max_memory,
            no_split,
            module_sizes,
            tied,
            reserve=reserve,
            allow_disk=allow_disk,
            verbose=verbose and not quiet,
            fallback=fallback_allocation,
            devices=devices,
            main_devices=main_devices,
            used=dict.fromkeys(devices, 0),
        )
        state.run(_children(model))
        return state

    try:
        chosen = plan(reserve=True, quiet=False)
        needs_retry = _offloads(chosen.device_map, gpus)
    except ValueError:
        chosen, needs_retry = None, True
    if needs_retry:
        # The room kept for streaming offloaded layers is only needed if something is offloaded:
        # if the model fits without that reserve, use that map (Accelerate #3041).
        try:
            unreserved = plan(reserve=False, quiet=True)
        except ValueError:
            unreserved = None
        if unreserved is not None and not _offloads(unreserved.device_map, gpus):
            chosen = unreserved
        elif chosen is None:
            plan(reserve=True, quiet=True)  # re-raise the informative error
    assert chosen is not None

    device_map = chosen.device_map
    if clean_result:
        planned = list(device_map)
        cleaned = clean_device_map(OrderedDict(device_map))

        def first_position(key: str) -> int:
            return next(i for i, k in enumerate(planned) if _inside(k, key))

        device_map = OrderedDict(sorted(cleaned.items(), key=lambda kv: first_position(kv[0])))
    _warn_offloaded_buffers(chosen, max_memory, gpus, dtype, special_dtypes, offload_buffers)
    if chosen.minimum_needed:
        logger.info(
            "No module could be placed on these devices (bytes needed for the first one): %s",
            {d: format_size(v) for d, v in chosen.minimum_needed.items()},
        )
    return device_map


def _warn_offloaded_buffers(
    plan: _Plan,
    max_memory: Mapping[Any, int],
    gpus: list[Any],
    dtype: Any,
    special_dtypes: Any,
    offload_buffers: bool,
) -> None:
    if offload_buffers or not gpus:
        return
    offloaded = sum(
        compute_module_total_buffer_size(m, dtype=dtype, special_dtypes=special_dtypes)
        for _, m, d in plan.assigned_modules
        if d in ("cpu", "disk") and isinstance(m, nn.Module)
    )
    if offloaded <= 0:
        return
    used = {d: v for d, v in plan.used.items() if v > 0}
    if not any(max_memory[g] >= offloaded + used.get(g, 0) for g in gpus if g in max_memory):
        logger.warning(
            "The offloaded layers keep %s of buffers on the accelerator, which fits no GPU's "
            "remaining budget; if you run out of memory, pass offload_buffers=True.",
            format_size(offloaded),
        )
