"""Planning a checkpoint load: which shard provides each weight, in which dtype.

Every shape and key problem is found before any weight is read, and reported all at once.

Example:
    >>> target_dtype("w", torch.int64, torch.int64, torch.float16, None) is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from accel.big_model.checkpoint_files import CheckpointError
from accel.big_model.device_lookup import device_for
from accel.big_model.shard_reader import ShardReader
from accel.state.process_logging import library_logger

logger = library_logger("accel.big_model.checkpoint")


def _keeps_fp32(name: str, keep_in_fp32_modules: Iterable[str] | None) -> bool:
    return any(name == key or f"{key}." in name for key in keep_in_fp32_modules or ())


def target_dtype(
    name: str,
    stored: torch.dtype | None,
    current: torch.dtype,
    dtype: torch.dtype | None,
    keep_in_fp32_modules: Iterable[str] | None,
) -> torch.dtype | None:
    """The dtype weight ``name`` is loaded in (``None``: the model's current dtype).

    Only floating-point weights are converted to ``dtype``; names under
    ``keep_in_fp32_modules`` stay float32 when ``dtype`` is float16 or bfloat16.

    Example:
        >>> target_dtype("lm_head.weight", torch.float32, torch.float32, torch.float16, ["lm_head"])
        torch.float32
        >>> target_dtype("h.0.weight", torch.float32, torch.float32, torch.float16, ["lm_head"])
        torch.float16
    """
    if dtype is None or stored is None or not stored.is_floating_point:
        return None
    if dtype in (torch.float16, torch.bfloat16) and _keeps_fp32(name, keep_in_fp32_modules):
        return torch.float32
    return dtype


def plan_checkpoint_load(
    model: nn.Module,
    shards: list[ShardReader],
    device_map: Mapping[str, Any] | None,
    strict: bool,
    tied_params: list[list[str]],
    source: str,
) -> dict[str, ShardReader]:
    """Which shard provides each key of ``model``.

    Raises :class:`CheckpointError` listing every mis-shaped key and every key ``device_map``
    gives no device (and, with ``strict``, every missing and unexpected key); otherwise warns
    about them. A key tied to one the checkpoint has is not missing. ``source`` names the
    checkpoint in messages.

    Example:
        >>> import tempfile
        >>> from accel.big_model.shard_writer import save_sharded_safetensors
        >>> model = nn.Linear(2, 2)
        >>> path = save_sharded_safetensors(model.state_dict(), tempfile.mkdtemp())[0]
        >>> sorted(plan_checkpoint_load(model, [ShardReader(path)], None, True, [], "ckpt"))
        ['bias', 'weight']
    """
    model_state = model.state_dict(keep_vars=True)
    owner: dict[str, ShardReader] = {}
    for shard in shards:
        for key in shard.all_keys():
            owner.setdefault(key, shard)
    mis_shaped, unmapped = [], []
    for key, shard in owner.items():
        if key not in model_state or "SCB" in key:
            continue
        shape, _ = shard.info(key)
        if tuple(model_state[key].shape) != shape:
            mis_shaped.append(
                f"{key}: checkpoint {list(shape)} vs model {list(model_state[key].shape)}"
            )
        if device_map is not None and device_for(device_map, key, default=None) is None:
            unmapped.append(key)
    unexpected = sorted(k for k in owner if k not in model_state and "SCB" not in k)
    covered = set(owner)
    for group in tied_params:
        if covered.intersection(group):
            covered.update(group)
    missing = sorted(k for k in model_state if k not in covered)

    problems = []
    if mis_shaped:
        problems.append("mis-shaped keys: " + "; ".join(mis_shaped))
    if unmapped:
        problems.append("keys with no device in device_map: " + ", ".join(sorted(unmapped)))
    if strict and missing:
        problems.append("missing keys: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not fit {type(model).__name__}: " + " | ".join(problems)
        )
    if unexpected:
        logger.warning(
            "Weights of checkpoint %s not used by %s: %s", source, type(model).__name__, unexpected
        )
    if missing:
        logger.warning(
            "Weights of %s not found in checkpoint %s (left as they are): %s",
            type(model).__name__,
            source,
            missing,
        )
    return {k: s for k, s in owner.items() if k in model_state and "SCB" not in k}
