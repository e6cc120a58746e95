"""Loading a checkpoint into a model, shard by shard, with weights placed by a device map.

Modules mapped to ``"disk"`` are not copied anywhere when the checkpoint is safetensors: the
offload index points at the shard and the weights are read from it in place at forward time.

Example:
    >>> import tempfile
    >>> from accel.big_model.shard_writer import save_sharded_safetensors
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_sharded_safetensors(nn.Linear(2, 2).state_dict(), folder)
    >>> model = nn.Linear(2, 2, device="meta")
    >>> load_checkpoint_in_model(model, folder, device_map={"": "disk"})
    >>> model.weight.device.type, sorted(model._accel_offload_index)
    ('meta', ['bias', 'weight'])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from accel.big_model.checkpoint_files import PathLike, checkpoint_files
from accel.big_model.device_lookup import device_for
from accel.big_model.device_map_checks import check_device_values
from accel.big_model.dtypes import as_dtype
from accel.big_model.load_plan import plan_checkpoint_load, target_dtype
from accel.big_model.offload import offload_weight, save_offload_index
from accel.big_model.shard_reader import ShardReader, populate_pages, readahead
from accel.big_model.tensors import set_module_tensor_to_device
from accel.big_model.tied import find_tied_parameters, retie_parameters
from accel.state.progress import progress_bar

Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias


def _load_into(
    model: nn.Module,
    checkpoint: PathLike,
    device_map: Mapping[str, Device] | None,
    offload_folder: PathLike | None,
    dtype: str | torch.dtype | None,
    offload_buffers: bool,
    keep_in_fp32_modules: list[str] | None,
    strict: bool,
) -> dict[str, dict[str, Any]]:
    """Load ``checkpoint`` into ``model``; return the offload index of the disk-mapped keys."""
    source = repr(os.fspath(checkpoint))
    if device_map is not None:
        check_device_values(device_map)  # before any file is opened
    dtype = None if dtype is None else as_dtype(dtype)
    tied_params = find_tied_parameters(model)
    files = checkpoint_files(checkpoint)
    shards = [ShardReader(path) for path in files]
    try:
        plan = plan_checkpoint_load(model, shards, device_map, strict, tied_params, source)
        model_state = model.state_dict(keep_vars=True)
        buffers = {name for name, _ in model.named_buffers()}
        offload_index: dict[str, dict[str, Any]] = {}
        disk_keys = [
            k for k in plan if device_map is not None and device_for(device_map, k) == "disk"
        ]
        needs_folder = any(not plan[k].safetensors for k in disk_keys)
        if needs_folder and offload_folder is None:
            raise ValueError(
                "some modules are mapped to 'disk' and the checkpoint is not safetensors, so "
                "their weights must be copied: pass offload_folder= (or convert the checkpoint "
                "with save_sharded_safetensors to serve them in place)"
            )
        if disk_keys and offload_folder is not None:
            os.makedirs(offload_folder, exist_ok=True)
        on_disk = set(disk_keys)
        in_memory = {s for k, s in plan.items() if s.safetensors and k not in on_disk}
        readahead([s.path for s in shards if s in in_memory])
        mapped: list[tuple[int, int]] = []

        for shard in progress_bar(shards, desc="Loading checkpoint shards", unit="shard"):
            for key in [k for k, s in plan.items() if s is shard]:
                current = model_state[key]
                stored_shape, stored_dtype = shard.info(key)
                new_dtype = target_dtype(
                    key, stored_dtype, current.dtype, dtype, keep_in_fp32_modules
                )
                device = None if device_map is None else device_for(device_map, key)
                if device == "disk" and (offload_buffers or key not in buffers):
                    final = new_dtype or current.dtype
                    if shard.safetensors:
                        offload_index[key] = {
                            "safetensors_file": os.path.abspath(shard.path),
                            "weight_name": shard.stored_name(key),
                            "dtype": str(final).replace("torch.", ""),
                            "shape": list(stored_shape),
                        }
                    elif offload_folder is not None:  # checked above for non-safetensors shards
                        value = shard.get(key).to(final)
                        offload_weight(value, key, offload_folder, index=offload_index)
                    set_module_tensor_to_device(model, key, "meta", dtype=final)
                    continue
                if device is None:
                    if current.device.type != "meta" and new_dtype is None:
                        with torch.no_grad():
                            current.copy_(shard.get(key, current.device))
                        continue
                    device = "cpu" if current.device.type == "meta" else current.device
                elif device == "disk":
                    device = "cpu"  # a buffer the hooks keep on the execution device
                value = shard.get(key, device)
                if shard.safetensors and value.device.type == "cpu" and value.numel():
                    mapped.append((value.data_ptr(), value.numel() * value.element_size()))
                set_module_tensor_to_device(model, key, device, value=value, dtype=new_dtype)
            shard.close()
    finally:
        for shard in shards:
            shard.close()
    populate_pages(mapped)

    _retie(model, tied_params)
    return offload_index


def _retie(model: nn.Module, tied_params: list[list[str]]) -> None:
    """Retie groups; a group still entirely on meta (offloaded) is tied to its first name."""
    retie_parameters(model, tied_params)
    for group in tied_params:
        tensors = [model.get_parameter(name) for name in group]
        if all(t.device.type == "meta" for t in tensors):
            shared = tensors[0]
            for name in group[1:]:
                owner_name, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(owner_name), leaf, shared)


def load_checkpoint_in_model(
    model: nn.Module,
    checkpoint: PathLike,
    device_map: Mapping[str, Device] | None = None,
    offload_folder: PathLike | None = None,
    dtype: str | torch.dtype | None = None,
    offload_state_dict: bool = False,
    offload_buffers: bool = False,
    keep_in_fp32_modules: list[str] | None = None,
    offload_8bit_bnb: bool = False,
    strict: bool = False,
) -> None:
    """Load a checkpoint (file, folder or sharded index) into ``model``, shard by shard.

    Each weight goes to the device ``device_map`` gives its module (without a map: the device
    of the model's tensor, CPU for meta tensors, copied in place when the tensor is real).
    Weights of ``"disk"`` modules are left on the meta device and recorded in an offload
    index: for safetensors checkpoints the index points at the shard itself (nothing is
    copied, ``offload_folder`` is optional); ``.bin`` checkpoints are copied to ``.dat`` files
    in ``offload_folder``. When ``offload_folder`` is given, the index is also written to its
    ``index.json`` so :func:`~accel.big_model.dispatch.dispatch_model` finds it.

    ``dtype`` converts floating-point weights (``keep_in_fp32_modules`` stay float32 when
    ``dtype`` is float16 or bfloat16). Shape mismatches always raise
    :class:`CheckpointError`; with ``strict``, missing and unexpected keys too (all listed),
    and nothing is loaded. A weight tied to one present in the checkpoint is not "missing".
    ``offload_state_dict`` is accepted for compatibility: shards are read tensor by tensor, so
    peak memory is already one tensor beyond the weights being kept.

    Example:
        >>> import tempfile
        >>> from accel.big_model.shard_writer import save_sharded_safetensors
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_sharded_safetensors(nn.Linear(2, 2).state_dict(), folder)
        >>> model = nn.Linear(2, 2, device="meta")
        >>> load_checkpoint_in_model(model, folder)
        >>> model.weight.device
        device(type='cpu')
    """
    if offload_8bit_bnb:
        raise ValueError(
            "offload_8bit_bnb=True applies to bitsandbytes 8-bit models, which "
            "accel-big-model does not load; pass offload_8bit_bnb=False"
        )
    if device_map is not None and "disk" in device_map.values() and offload_folder is not None:
        os.makedirs(offload_folder, exist_ok=True)
    index = _load_into(
        model,
        checkpoint,
        device_map,
        offload_folder,
        dtype,
        offload_buffers,
        keep_in_fp32_modules,
        strict,
    )
    if index:
        if offload_folder is not None:
            save_offload_index(index, offload_folder)
        model.__dict__["_accel_offload_index"] = index
    else:
        model.__dict__.pop("_accel_offload_index", None)  # a previous load's index is stale
