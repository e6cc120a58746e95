"""Budgets that spread a model evenly over several accelerators (``device_map="balanced"``).

Example:
    >>> from accel.big_model.init import init_empty_weights
    >>> with init_empty_weights():
    ...     model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 100))
    >>> get_balanced_memory(model, max_memory={"cpu": 10**6})
    {'cpu': 1000000}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from accel.big_model.auto_device_map import no_split_list
from accel.big_model.sizes import MemoryBudget, compute_module_sizes, get_max_memory
from accel.state.availability import is_mps_available


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
    counted: list[int | str] = list(gpu_ids)
    if is_mps_available() and max_memory.get("mps", 0) > 0:
        counted.append("mps")
    if not counted:
        return max_memory
    if len(counted) == 1:
        low_zero = False  # accel's headroom already applies when budgets are measured

    sizes = compute_module_sizes(model, dtype=dtype, special_dtypes=special_dtypes)
    total = sizes[""]
    per_gpu = int(total // (len(counted) - 1 if low_zero else len(counted)))

    no_split = no_split_list(no_split_module_classes)
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
        max_memory[first] = min(int(max(0, total - others)), max_memory[first])
    return max_memory


def _leaves(sizes: Mapping[str, float]) -> set[str]:
    parents = {n.rsplit(".", 1)[0] for n in sizes if n and "." in n}
    return {n for n in sizes if n and n not in parents}
