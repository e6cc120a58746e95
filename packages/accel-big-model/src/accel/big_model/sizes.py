"""Byte sizes of dtypes, tensors and modules, and the memory budget of each device.

Everything here works on models whose weights live on the meta device (see
:func:`accel.big_model.init.init_empty_weights`): only shapes and dtypes are read.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import nn

from accel.big_model.dtypes import as_dtype, dtype_byte_size, keeps_own_dtype
from accel.big_model.tensors import named_module_tensors
from accel.state.availability import is_npu_available
from accel.state.nvml import nvml_free_memory
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

DeviceKey = int | str
MemoryBudget = Mapping[DeviceKey, int | str]

#: Fraction of each accelerator's free memory that accel leaves unused when it measures the
#: budgets itself (``max_memory=None``): room for activations, the KV cache, CUDA context growth
#: and the buffers of offloaded layers. Budgets given explicitly are used as given.
DEFAULT_ACCELERATOR_HEADROOM = 0.10

_UNITS = {
    "TIB": 2**40,
    "GIB": 2**30,
    "MIB": 2**20,
    "KIB": 2**10,
    "TB": 10**12,
    "GB": 10**9,
    "MB": 10**6,
    "KB": 10**3,
    "B": 1,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_DEVICE_ORDER = ("mps", "cpu", "disk")


def convert_file_size_to_int(size: int | float | str) -> int:
    """Bytes in ``size``: an int, or a number with a unit (``"10GB"``, ``"10GiB"``, ``"500MB"``).

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB) powers of
    1024; the case of the unit does not matter except that a lower-case ``b`` after a decimal
    prefix (``"8Mb"``) means bits, as in Accelerate. A bare number string counts bytes.

    Example:
        >>> convert_file_size_to_int("1MiB")
        1048576
        >>> convert_file_size_to_int("1.5GB")
        1500000000
    """
    error = (
        f"size {size!r} is not a valid memory size; use an integer number of bytes or a number "
        f"with a unit such as '500MB', '10GB' or '10GiB'"
    )
    if isinstance(size, bool):
        raise ValueError(error)
    if isinstance(size, (int, float)):
        if size < 0:
            raise ValueError(error)
        return int(size)
    if not isinstance(size, str):
        raise ValueError(error)
    match = _SIZE_RE.match(size)
    if match is None:
        raise ValueError(error)
    number, unit = float(match.group(1)), match.group(2)
    factor = _UNITS.get(unit.upper() or "B")
    if factor is None:
        raise ValueError(error)
    value = int(number * factor)
    if unit[-1:] == "b" and unit.upper() in ("KB", "MB", "GB", "TB"):
        value //= 8
    return value


def format_size(size: float) -> str:
    """``size`` bytes in a short human form with a binary unit.

    Example:
        >>> format_size(3 * 2**20)
        '3.00 MiB'
        >>> format_size(512)
        '512 B'
    """
    size = float(size)
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= factor:
            return f"{size / factor:.2f} {unit}"
    return f"{size:.0f} B"


def compute_module_sizes(
    model: nn.Module,
    dtype: str | torch.dtype | None = None,
    special_dtypes: Mapping[str, str | torch.dtype] | None = None,
    buffers_only: bool = False,
) -> defaultdict[str, float]:
    """Bytes of every submodule and tensor of ``model``, keyed by dotted name (``""`` = total).

    With ``dtype``, floating-point tensors are counted as if loaded in that dtype (never larger
    than they are); ``special_dtypes`` overrides it per tensor name. Tied tensors count once.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        >>> sizes = compute_module_sizes(model)
        >>> sizes[""], sizes["0"], sizes["1.weight"]
        (120, 80, 32)
        >>> compute_module_sizes(model, dtype="float16")[""]
        60
    """
    default_size = dtype_byte_size(as_dtype(dtype)) if dtype is not None else None
    special = {k: dtype_byte_size(as_dtype(v)) for k, v in (special_dtypes or {}).items()}
    tensors = (
        model.named_buffers(recurse=True)
        if buffers_only
        else named_module_tensors(model, recurse=True)
    )
    sizes: defaultdict[str, float] = defaultdict(int)
    for name, tensor in tensors:
        own = dtype_byte_size(tensor.dtype)
        if name in special:
            per_element = special[name]
        elif default_size is None or keeps_own_dtype(tensor.dtype):
            per_element = own
        else:
            per_element = min(default_size, own)
        size = tensor.numel() * per_element
        parts = name.split(".")
        for depth in range(len(parts) + 1):
            sizes[".".join(parts[:depth])] += size
    return sizes


def compute_module_total_buffer_size(
    model: nn.Module,
    dtype: str | torch.dtype | None = None,
    special_dtypes: Mapping[str, str | torch.dtype] | None = None,
) -> float:
    """Bytes of all buffers of ``model``.

    Example:
        >>> compute_module_total_buffer_size(nn.BatchNorm1d(4))
        40
    """
    sizes = compute_module_sizes(
        model, dtype=dtype, special_dtypes=special_dtypes, buffers_only=True
    )
    return sizes.get("", 0)


def _is_layer(module: object, no_split_module_classes: Iterable[str]) -> bool:
    if not isinstance(module, nn.Module):
        return True
    return module.__class__.__name__ in no_split_module_classes or not any(
        True for _ in module.children()
    )


def get_max_layer_size(
    modules: Sequence[tuple[str, nn.Module | torch.Tensor]],
    module_sizes: Mapping[str, float],
    no_split_module_classes: Iterable[str],
) -> tuple[float, list[str]]:
    """Size of the largest *layer* under ``modules``, and the names of the layers of that size.

    A layer is a module with no children, or one whose class name is in
    ``no_split_module_classes`` (it is never split across devices). Tensors in ``modules``
    count as layers too.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 8)))
        >>> sizes = compute_module_sizes(model)
        >>> get_max_layer_size(list(model.named_children()), sizes, [])
        (160, ['1.0'])
    """
    no_split = list(no_split_module_classes)
    best: float = 0
    names: list[str] = []
    stack = list(reversed(modules))
    while stack:
        name, module = stack.pop()
        if _is_layer(module, no_split):
            size = module_sizes[name]
            if size > best:
                best, names = size, [name]
            elif size == best:
                names.append(name)
        elif isinstance(module, nn.Module):
            children = [(f"{name}.{n}", child) for n, child in module.named_children()]
            stack.extend(reversed(children))
    return best, names


def calculate_maximum_sizes(model: nn.Module) -> tuple[float, tuple[float, list[str]]]:
    """``(total size, (largest layer size, its names))`` of ``model``.

    Classes listed in ``model._no_split_modules`` (set by transformers models) count as layers.

    Example:
        >>> calculate_maximum_sizes(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
        (120, (80, ['0']))
    """
    sizes = compute_module_sizes(model)
    no_split = getattr(model, "_no_split_modules", None) or []
    top_level = (
        list(model.named_parameters(recurse=False))
        + list(model.named_children())
        + list(model.named_buffers(recurse=False))
    )
    return sizes[""], get_max_layer_size(top_level, sizes, no_split)


def _available_cpu_memory() -> int:
    try:
        import psutil  # optional: more accurate on macOS and Windows

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _accelerator() -> tuple[str, Any]:
    """The accelerator type torch offers here and its torch submodule (``None`` on CPU)."""
    is_npu_available()  # imports torch_npu when installed, which adds torch.npu
    for kind in ("npu", "cuda", "xpu"):
        backend = getattr(torch, kind, None)
        try:
            if backend is not None and backend.is_available() and backend.device_count() > 0:
                return kind, backend
        except Exception:  # a half-installed backend must not break planning
            continue
    return "cpu", None


def _nvml_free_memory(cuda: Any) -> dict[int, int]:
    """Free bytes per CUDA ordinal from NVML (accel-core[cuda]): no CUDA context, no memory
    spent on one. Empty on ROCm or when NVML is missing; callers then ask torch."""
    if getattr(torch.version, "hip", None):
        return {}
    try:
        uuids = {
            index: str(cuda.get_device_properties(index).uuid)
            for index in range(cuda.device_count())
        }
    except Exception:  # an old torch without .uuid, or a half-installed driver
        return {}
    free = nvml_free_memory(list(uuids.values())) or {}
    return {index: free[uuid] for index, uuid in uuids.items() if uuid in free}


def _detect_max_memory(headroom: float) -> dict[DeviceKey, int]:
    budgets: dict[DeviceKey, int] = {}
    kind, backend = _accelerator()
    integrated = False
    if backend is not None:
        from_nvml = _nvml_free_memory(backend) if kind == "cuda" else {}
        for index in range(backend.device_count()):
            try:
                free = from_nvml.get(index)
                if free is None:
                    torch.empty(1, device=torch.device(kind, index))  # initialise the context
                    free = backend.mem_get_info(index)[0]
            except Exception:
                logger.info("%s:%d is not usable; skipping it", kind, index)
                continue
            budgets[index] = int(free * (1 - headroom))
            if kind == "cuda":
                props = backend.get_device_properties(index)
                integrated = integrated or bool(getattr(props, "is_integrated", False))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        # MPS shares host RAM: one budget, not two.
        budgets["mps"] = int(_available_cpu_memory() * (1 - headroom))
    elif not integrated:
        budgets["cpu"] = _available_cpu_memory()
    return budgets


def _device_key(key: object) -> DeviceKey:
    """``0``, ``"cuda:0"``, ``torch.device("cuda", 0)`` -> ``0``; ``"CPU"`` -> ``"cpu"``."""
    if isinstance(key, bool):
        raise ValueError(f"max_memory key {key!r} is not a device")
    if isinstance(key, int):
        return key
    if isinstance(key, torch.device):
        key = str(key)
    if isinstance(key, str):
        lowered = key.strip().lower()
        if lowered in _DEVICE_ORDER:
            return lowered
        if lowered.isdigit():
            return int(lowered)
        kind, _, index = lowered.partition(":")
        if kind in ("cuda", "xpu", "npu", "mlu", "musa", "sdaa", "hpu") and index.isdigit():
            return int(index)
    raise ValueError(
        f"max_memory key {key!r} is not a device; use an integer accelerator ordinal (0, 1, ...) "
        f"or 'cuda:N', or one of 'mps', 'cpu', 'disk'"
    )


def get_max_memory(
    max_memory: MemoryBudget | None = None, *, headroom: float | None = None
) -> dict[DeviceKey, int]:
    """Memory budget per device, in bytes, ordered accelerators first, then mps, cpu, disk.

    With ``max_memory=None`` the budgets are measured: the free memory of each accelerator
    minus ``headroom`` (default :data:`DEFAULT_ACCELERATOR_HEADROOM`, i.e. 10% is left for
    activations) and the available CPU RAM. Otherwise ``max_memory`` is validated and copied,
    sizes like ``"10GiB"`` converted to bytes, keys like ``"cuda:1"`` turned into ``1``; it
    is used as given unless ``headroom`` is passed explicitly. Integer keys mean accelerator
    ordinals whether or not those accelerators exist here, so maps can be planned on any host.
    As in Accelerate, string sizes in the caller's dict are replaced by their byte counts
    (once the whole dict is valid): transformers reads them back as integers.

    Example:
        >>> budget = {"cpu": "1GB", 0: "500MB"}
        >>> get_max_memory(budget)
        {0: 500000000, 'cpu': 1000000000}
        >>> budget
        {'cpu': 1000000000, 0: 500000000}
        >>> get_max_memory({0: "1000MB"}, headroom=0.1)
        {0: 900000000}
    """
    if headroom is not None and not 0 <= headroom < 1:
        raise ValueError(f"headroom={headroom!r} must be a fraction in [0, 1)")
    if max_memory is None:
        return _detect_max_memory(DEFAULT_ACCELERATOR_HEADROOM if headroom is None else headroom)

    budgets: dict[DeviceKey, int] = {}
    converted: dict[DeviceKey, int] = {}
    for raw_key, raw_value in max_memory.items():
        key = _device_key(raw_key)
        try:
            value = convert_file_size_to_int(raw_value)
        except ValueError as err:
            raise ValueError(f"max_memory[{raw_key!r}]: {err}") from None
        if isinstance(raw_value, str):
            converted[raw_key] = value
        if key in budgets:
            raise ValueError(f"max_memory names device {key!r} twice (as {raw_key!r})")
        if headroom and (isinstance(key, int) or key == "mps"):
            value = int(value * (1 - headroom))
        budgets[key] = value

    ordinals = sorted(k for k in budgets if isinstance(k, int))
    if any(k < 0 for k in ordinals):
        raise ValueError(f"max_memory has a negative device ordinal: {ordinals}")
    _, backend = _accelerator()
    present = backend.device_count() if backend is not None else 0
    missing = [k for k in ordinals if k >= present]
    if missing and present:
        logger.warning("max_memory names devices %s but only %d are present", missing, present)
    elif missing:
        logger.info("planning for accelerators %s that this machine does not have", missing)
    if converted and isinstance(max_memory, MutableMapping):
        max_memory.update(converted)
    order = ordinals + [k for k in _DEVICE_ORDER if k in budgets]
    return {k: budgets[k] for k in order}
