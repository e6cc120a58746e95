"""Device maps: which device holds each submodule of a model too big for one device.

A device map is a dict ``{module name: device}`` where a device is an accelerator ordinal
(``0``, ``1``, ...), ``"mps"``, ``"cpu"`` (offloaded to RAM, streamed to the main accelerator
for each forward) or ``"disk"`` (memory-mapped from an offload folder). ``""`` names the whole
model. This module turns what a user passes (a strategy name, a device, a dict) into a checked
map and prints it; planning is in :mod:`~accel.big_model.auto_device_map` and
:mod:`~accel.big_model.balanced_memory`, checks in :mod:`~accel.big_model.device_map_checks`,
and the device of one name is :func:`~accel.big_model.device_lookup.device_for`.

Example:
    >>> resolve_device_map(nn.Linear(2, 2), "cpu")
    {'': 'cpu'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from accel.big_model.auto_device_map import DeviceMap, infer_auto_device_map
from accel.big_model.balanced_memory import get_balanced_memory
from accel.big_model.device_map_checks import check_device_map, is_valid_device
from accel.big_model.sizes import MemoryBudget, compute_module_sizes, format_size
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


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
    if is_valid_device(device_map) and not isinstance(device_map, Mapping):
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
    rule = ("-" * widths[0], "-" * widths[1], "-" * widths[2])

    def line(row: tuple[str, str, str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    out = [line(header), line(rule), *map(line, rows), line(rule), *map(line, total_rows)]
    return "\n".join(out)
