"""Device maps: which device holds each submodule of a model too big for one device.

A device map is a dict ``{module name: device}`` where a device is an accelerator ordinal
(``0``, ``1``, ...), ``"mps"``, ``"cpu"`` (offloaded to RAM, streamed to the main accelerator
for each forward) or ``"disk"`` (memory-mapped from an offload folder). ``""`` names the whole
model. All planning reads only shapes and dtypes, so models on the meta device work.
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
    format_size,
    get_max_layer_size,
    get_max_memory,
)
from accel.big_model.tied import check_tied_parameters_on_same_device, find_tied_parameters
from accel.state.availability import is_mps_available
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

DeviceMap = dict[str, int | str | torch.device]
Entry = tuple[str, nn.Module | torch.Tensor]
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def _no_split_list(no_split_module_classes: str | Iterable[str] | None) -> list[str]:
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
    if not isinstance(module, nn.Module):
        return []
    return (
        list(module.named_parameters(recurse=False))
        + list(module.named_children())
        + list(module.named_buffers(recurse=False))
    )


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
    size_limit: int | str,
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
    from accel.big_model.sizes import convert_file_size_to_int

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
    no_split = _no_split_list(no_split_module_classes)
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


def get_balanced_memory(
    model: nn.Module,
    max_memory: MemoryBudget | None = None,
    no_split_module_classes: str | list[str] | None = None,
    dtype: str | torch.dtype | None = None,
    special_dtypes: Mapping[str, str | torch.dtype] | None = None,
    low_zero: bool = False,
    *,
    headroom: float | None = None,
) -> dict[Any, int]:
    """A ``max_memory`` for :func:`infer_auto_device_map` that spreads the model evenly.

    Each accelerator but the last gets about ``model size / n`` plus a margin (1.25 times the
    larger of the biggest no-split block and the mean leaf module), so that rounding does not
    push layers to the CPU; the last keeps its full budget. ``low_zero`` keeps GPU 0 as empty
    as possible (for ``generate`` outputs). Devices with a zero budget are ignored, and GPU
    ordinals need not be contiguous.

    Example:
        >>> from accel.big_model.init import init_empty_weights
        >>> with init_empty_weights():
        ...     model = nn.Sequential(*[nn.Linear(100, 100) for _ in range(4)])
        >>> get_balanced_memory(model, max_memory={0: 10**6, 1: 10**6, "cpu": 10**6})
        {0: 131300, 1: 1000000, 'cpu': 1000000}
    """
    max_memory = get_max_memory(max_memory, headroom=headroom)
    gpu_ids = sorted(d for d, v in max_memory.items() if isinstance(d, int) and v > 0)
    counted = list(gpu_ids)
    if is_mps_available() and max_memory.get("mps", 0) > 0:
        counted.append("mps")
    if not counted:
        return max_memory
    if len(counted) == 1:
        low_zero = False  # accel's headroom already applies when budgets are measured

    sizes = compute_module_sizes(model, dtype=dtype, special_dtypes=special_dtypes)
    total = sizes[""]
    per_gpu = total // (len(counted) - 1 if low_zero else len(counted))

    no_split = _no_split_list(no_split_module_classes)
    block = 0.0
    if no_split:
        seen: dict[str, float] = {}
        for name, module in model.named_modules():
            cls = module.__class__.__name__
            if name and cls in no_split and cls not in seen:
                seen[cls] = sizes[name]
        block = max(seen.values(), default=0)
    # Mean size of the modules directly above the tensors (the "leaf modules").
    tensor_names = _leaves(sizes)
    module_sizes = {n: v for n, v in sizes.items() if n not in tensor_names}
    leaf_modules = _leaves(module_sizes)
    mean_leaf = int(sum(module_sizes[n] for n in leaf_modules) / max(len(leaf_modules), 1))
    per_gpu += int(1.25 * max(block, mean_leaf))

    for gpu in gpu_ids[:-1]:
        if not (low_zero and gpu == gpu_ids[0]):
            max_memory[gpu] = min(per_gpu, max_memory[gpu])
    if low_zero and gpu_ids:
        # The first GPU only takes what the others cannot hold (by id, not position: #4297).
        first, others = gpu_ids[0], sum(max_memory[g] for g in gpu_ids[1:])
        max_memory[first] = min(max(0, total - others), max_memory[first])
    return max_memory


def _leaves(sizes: Mapping[str, float]) -> set[str]:
    parents = {n.rsplit(".", 1)[0] for n in sizes if n and "." in n}
    return {n for n in sizes if n and n not in parents}


def _valid_device(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    if isinstance(value, torch.device):
        return True
    if isinstance(value, str):
        if value in ("disk", "cpu", "mps", "meta"):
            return True
        try:
            torch.device(value)
        except (RuntimeError, ValueError):
            return False
        return True
    return False


_VALID_DEVICES = (
    "an accelerator index (0, 1, ...), 'cpu', 'disk', 'meta', or a torch device string such "
    "as 'cuda:1', 'xpu:0', 'mps'"
)


def check_device_values(device_map: Mapping[str, Any], where: str = "device_map") -> None:
    """Raise ``ValueError`` naming every entry of ``device_map`` whose value is not a device.

    Checked before anything is read, so a typo (``"gpu7"``) is reported as such, not as a
    failure to read the checkpoint.

    Example:
        >>> check_device_values({"": "cpu", "0": 1})
        >>> check_device_values({"": "gpu7"})
        Traceback (most recent call last):
        ...
        ValueError: device_map[''] = 'gpu7' is not a device; valid: an accelerator index (0, 1, ...), 'cpu', 'disk', 'meta', or a torch device string such as 'cuda:1', 'xpu:0', 'mps'
    """
    bad = [f"{where}[{k!r}] = {v!r}" for k, v in device_map.items() if not _valid_device(v)]
    if bad:
        raise ValueError(f"{', '.join(bad)} is not a device; valid: {_VALID_DEVICES}")


def check_device_map(model: nn.Module, device_map: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``device_map`` covers ``model`` exactly.

    Every key must name a submodule, parameter or buffer of ``model`` (``""`` is the whole
    model), every value must be a device, and every tensor of the state dict must fall under a
    key. The message lists all offending names. Tied parameters mapped to different devices
    only get a warning.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> check_device_map(model, {"0": 0, "1": "cpu"})
        >>> check_device_map(model, {"0": 0})
        Traceback (most recent call last):
        ...
        ValueError: device_map gives no device for these tensors of the model: 1.weight, 1.bias
    """
    modules = {name for name, _ in model.named_modules()}
    tensors = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    tensors |= {name for name, _ in model.named_buffers(remove_duplicate=False)}
    unknown = [k for k in device_map if k != "" and k not in modules and k not in tensors]
    if unknown:
        raise ValueError(
            f"device_map names modules that do not exist in {type(model).__name__}: "
            f"{', '.join(map(repr, unknown))}"
        )
    check_device_values(device_map)
    if "" not in device_map:
        missing = [t for t in model.state_dict() if not any(_inside(t, k) for k in device_map)]
        if missing:
            raise ValueError(
                f"device_map gives no device for these tensors of the model: {', '.join(missing)}"
            )
    check_tied_parameters_on_same_device(find_tied_parameters(model), device_map)


def resolve_device_map(
    model: nn.Module,
    device_map: str | int | torch.device | Mapping[str, Any],
    max_memory: MemoryBudget | None = None,
    no_split_module_classes: str | list[str] | None = None,
    dtype: str | torch.dtype | None = None,
    special_dtypes: Mapping[str, str | torch.dtype] | None = None,
    offload_buffers: bool = False,
    *,
    headroom: float | None = None,
    allow_disk: bool = True,
    fallback_allocation: bool = False,
    verbose: bool = False,
) -> DeviceMap:
    """Turn what a user passes as ``device_map`` into a checked ``{module: device}`` dict.

    - ``"auto"`` / ``"balanced"``: spread evenly over the accelerators
      (:func:`get_balanced_memory`), then :func:`infer_auto_device_map`.
    - ``"balanced_low_0"``: the same, keeping GPU 0 as free as possible.
    - ``"sequential"``: fill accelerator 0, then 1, ... then CPU, then disk.
    - a device (``"cpu"``, ``"cuda:1"``, ``0``, ``torch.device``): the whole model there.
    - a dict: validated with :func:`check_device_map` and returned as a copy.

    The chosen map is logged as a table (:func:`format_device_map`) at INFO level on the
    ``accel.big_model.device_map`` logger, and printed when ``verbose``.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> dict(resolve_device_map(model, "sequential", max_memory={"cpu": "1MB"}))
        {'': 'cpu'}
        >>> resolve_device_map(model, "cuda:1")
        {'': 'cuda:1'}
    """
    if isinstance(device_map, Mapping):
        result: DeviceMap = dict(device_map)
        check_device_map(model, result)
        return result
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        if device_map != "sequential":
            max_memory = get_balanced_memory(
                model,
                max_memory=max_memory,
                no_split_module_classes=no_split_module_classes,
                dtype=dtype,
                special_dtypes=special_dtypes,
                low_zero=device_map == "balanced_low_0",
                headroom=headroom,
            )
            headroom = None  # already applied to the balanced budgets
        result = infer_auto_device_map(
            model,
            max_memory=max_memory,
            no_split_module_classes=no_split_module_classes,
            dtype=dtype,
            special_dtypes=special_dtypes,
            offload_buffers=offload_buffers,
            fallback_allocation=fallback_allocation,
            headroom=headroom,
            allow_disk=allow_disk,
        )
        table = format_device_map(model, result, dtype=dtype, special_dtypes=special_dtypes)
        logger.info("device_map=%r resolved to:\n%s", device_map, table)
        if verbose:
            print(table)
        return result
    if _valid_device(device_map) and not isinstance(device_map, Mapping):
        return {"": device_map}
    raise ValueError(
        f"device_map={device_map!r} is not valid; use one of "
        f"{', '.join(map(repr, DEVICE_MAP_STRATEGIES))}, a device such as 'cpu' or 0, or a dict "
        f"mapping module names to devices"
    )


def format_device_map(
    model: nn.Module,
    device_map: Mapping[str, Any],
    dtype: str | torch.dtype | None = None,
    special_dtypes: Mapping[str, str | torch.dtype] | None = None,
) -> str:
    """A readable table of ``device_map``: one row per entry (module, device, size), then
    the total per device.

    Example:
        >>> model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 10))
        >>> print(format_device_map(model, {"0": 0, "1": "cpu"}))
        module  device  size
        ------  ------  ---------
        0       0       39.45 KiB
        1       cpu     3.95 KiB
        ------  ------  ---------
        total   0       39.45 KiB
        total   cpu     3.95 KiB
    """
    sizes = compute_module_sizes(model, dtype=dtype, special_dtypes=special_dtypes)
    rows = [
        (name or "(whole model)", str(device), format_size(sizes.get(name, 0)))
        for name, device in device_map.items()
    ]
    totals: dict[str, float] = {}
    for name, device in device_map.items():
        totals[str(device)] = totals.get(str(device), 0) + sizes.get(name, 0)
    total_rows = [("total", device, format_size(size)) for device, size in totals.items()]
    header = ("module", "device", "size")
    widths = [max(len(r[i]) for r in [header, *rows, *total_rows]) for i in range(3)]
    rule = tuple("-" * w for w in widths)

    def line(row: tuple[str, str, str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    out = [line(header), line(rule), *map(line, rows), line(rule), *map(line, total_rows)]
    return "\n".join(out)
