"""Writing checkpoints: sharding a state dict and writing the shards atomically.

A new folder appears whole; in an existing one each file is replaced by rename (the index
last). Tensors that share memory (tied weights) are stored once.

Example:
    >>> import os, tempfile
    >>> paths = save_sharded_safetensors({"w": torch.ones(2)}, tempfile.mkdtemp())
    >>> [os.path.basename(p) for p in paths]
    ['model.safetensors']
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import torch

from accel.big_model.checkpoint_files import (
    ALIASES_KEY,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_NAME,
    PathLike,
)
from accel.big_model.sizes import convert_file_size_to_int
from accel.state.progress import progress_bar


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    return (str(tensor.device), tensor.untyped_storage().data_ptr())


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _shard_name(weights_name: str, idx: int, total: int) -> str:
    stem, dot, ext = weights_name.rpartition(".")
    if not dot:
        stem, ext = weights_name, ""
    suffix = f"-{idx:05d}-of-{total:05d}"
    return f"{stem}{suffix}.{ext}" if ext else f"{stem}{suffix}"


def shard_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    max_shard_size: int | str = "10GB",
    weights_name: str = WEIGHTS_NAME,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any] | None]:
    """Split ``state_dict`` into shards of at most ``max_shard_size`` bytes (in order).

    A tensor bigger than the limit gets a shard of its own; tensors sharing memory stay in the
    shard of the first one and count once. Returns ``(shards, index)``: shard file names
    (``model-00001-of-00003.safetensors`` style) to sub state dicts, and the index
    ``{"metadata": {"total_size": ...}, "weight_map": {key: file}}`` (``None`` for one shard).

    Example:
        >>> sd = {"a": torch.zeros(4), "b": torch.zeros(4), "c": torch.zeros(4)}
        >>> shards, index = shard_checkpoint(sd, max_shard_size=32, weights_name="model.safetensors")
        >>> sorted(shards), index["weight_map"]["c"]
        (['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'], 'model-00002-of-00002.safetensors')
    """
    limit = convert_file_size_to_int(max_shard_size)
    blocks: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    total = 0
    home: dict[tuple[str, int], int] = {}
    for key, tensor in state_dict.items():
        storage = _storage_key(tensor) if tensor.device.type != "meta" else ("meta", id(tensor))
        if storage in home and tensor.numel() > 0:
            blocks[home[storage]][key] = tensor
            continue
        nbytes = _nbytes(tensor)
        if blocks[-1] and size + nbytes > limit:
            blocks.append({})
            size = 0
        blocks[-1][key] = tensor
        home[storage] = len(blocks) - 1
        size += nbytes
        total += nbytes
    if len(blocks) == 1:
        return {weights_name: blocks[0]}, None
    names = [_shard_name(weights_name, i + 1, len(blocks)) for i in range(len(blocks))]
    weight_map = {key: name for name, block in zip(names, blocks) for key in block}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    return dict(zip(names, blocks)), index


def dedupe_shared_tensors(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Make ``state_dict`` savable as safetensors: contiguous CPU tensors sharing no memory,
    plus ``{alias: kept name}`` for names that were the very same view of one storage (tied
    weights, stored once). Distinct views of one storage become copies. Raises on a value that
    is not a tensor or is on the meta device, naming its key.

    Example:
        >>> w = torch.ones(2, 2)
        >>> kept, aliases = dedupe_shared_tensors({"emb": w, "head": w, "row": w[0]})
        >>> sorted(kept), aliases
        (['emb', 'row'], {'head': 'emb'})
    """
    entries: list[tuple[str, torch.Tensor, tuple, tuple]] = []
    distinct: dict[tuple, set[tuple]] = {}
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(tensor).__name__}, not a tensor")
        if tensor.device.type == "meta":
            raise ValueError(f"state_dict[{key!r}] is on the meta device and has no data to save")
        tensor = tensor.detach()
        storage = _storage_key(tensor)
        view = (tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        entries.append((key, tensor, storage, view))
        if tensor.numel() > 0:
            distinct.setdefault(storage, set()).add(view)
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for key, tensor, storage, view in entries:
        if tensor.numel() > 0 and (storage, view) in first:
            aliases[key] = first[(storage, view)]
            continue
        first[(storage, view)] = key
        if len(distinct.get(storage, ())) > 1:
            tensor = tensor.contiguous().clone()
        kept[key] = tensor.contiguous().to("cpu")
    return kept, aliases


_SHARD_PATTERN = r"(\.{ext}|-\d{{5}}-of-\d{{5}}\.{ext}|\.{ext}\.index\.json)"


def save_sharded_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    folder: PathLike,
    max_shard_size: int | str = "10GB",
    weights_name: str = SAFE_WEIGHTS_NAME,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """Save ``state_dict`` as safetensors shards in ``folder``, with an index when sharded.

    The layout is the one transformers writes (``model.safetensors``, or
    ``model-00001-of-0000N.safetensors`` + ``model.safetensors.index.json``), so Accelerate
    and transformers read it. The write is atomic: everything goes to a temporary folder
    first; a new folder appears whole, an existing one gets each file replaced by rename
    (the index last), then stale shards of an earlier save are removed. Tensors that share
    memory are handled: the same view stored twice (tied weights) is saved once and its other
    names recorded in the shard's metadata (``accel_aliases``; :func:`load_state_dict`
    restores them), distinct views are saved as copies. Returns the written paths.

    Example:
        >>> import tempfile
        >>> folder = os.path.join(tempfile.mkdtemp(), "ckpt")
        >>> w = torch.ones(2, 2)
        >>> paths = save_sharded_safetensors({"emb": w, "head": w}, folder)
        >>> [os.path.basename(p) for p in paths]
        ['model.safetensors']
        >>> from accel.big_model.shard_reader import load_state_dict
        >>> sorted(load_state_dict(paths[0]))
        ['emb', 'head']
    """
    from safetensors.torch import save_file

    kept, aliases = dedupe_shared_tensors(state_dict)

    def write(block: dict[str, torch.Tensor], path: str) -> None:
        meta = {"format": "pt", **(metadata or {})}
        mine = {a: k for a, k in aliases.items() if k in block}
        if mine:
            meta[ALIASES_KEY] = json.dumps(mine, sort_keys=True)
        save_file(block, path, metadata=meta)

    return write_sharded_checkpoint(kept, folder, write, max_shard_size, weights_name)


_TMP_PREFIX = ".accel-save-"


def _remove_leftovers(folder: str, parent: str, exists: bool) -> None:
    """Delete temporary folders of earlier saves to ``folder`` that never finished."""
    places = [(parent, f"{_TMP_PREFIX}{os.path.basename(folder)}-")]
    if exists:
        places.append((folder, _TMP_PREFIX))
    for where, prefix in places:
        for name in os.listdir(where):
            path = os.path.join(where, name)
            if name.startswith(prefix) and os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)


def write_sharded_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    folder: str | os.PathLike,
    write_shard: Callable[[dict[str, torch.Tensor], str], None],
    max_shard_size: int | str = "10GB",
    weights_name: str = SAFE_WEIGHTS_NAME,
) -> list[str]:
    """Shard ``state_dict`` and write it into ``folder`` atomically, one file per shard.

    ``write_shard(block, path)`` writes one shard (safetensors, ``torch.save``, ...). Files go
    to a temporary folder first: a new folder appears whole; in an existing one each file is
    replaced by rename (the index last), then shards of an earlier save that the new one does
    not overwrite are removed. Returns the written paths.

    Example:
        >>> import tempfile
        >>> folder = os.path.join(tempfile.mkdtemp(), "bin")
        >>> paths = write_sharded_checkpoint({"w": torch.ones(2)}, folder, torch.save, weights_name="pytorch_model.bin")
        >>> [os.path.basename(p) for p in paths]
        ['pytorch_model.bin']
    """
    folder = os.path.abspath(os.fspath(folder))
    shards, index = shard_checkpoint(state_dict, max_shard_size, weights_name)
    parent = os.path.dirname(folder)
    exists = os.path.isdir(folder)
    os.makedirs(folder if exists else parent, exist_ok=True)
    # A save killed midway (SIGKILL, power loss) leaves its temporary folder behind; the next
    # save to the same target removes it.
    _remove_leftovers(folder, parent, exists)
    tmp = tempfile.mkdtemp(
        prefix=_TMP_PREFIX if exists else f"{_TMP_PREFIX}{os.path.basename(folder)}-",
        dir=folder if exists else parent,
    )
    written: list[str] = []
    try:
        for name, block in progress_bar(shards.items(), desc="Saving checkpoint shards", total=len(shards), unit="shard"):  # fmt: skip
            write_shard(block, os.path.join(tmp, name))
            written.append(name)
        if index is not None:
            index_name = f"{weights_name}.index.json"
            with open(os.path.join(tmp, index_name), "w", encoding="utf-8") as handle:
                json.dump(index, handle, indent=2, sort_keys=True)
                handle.write("\n")
            written.append(index_name)
        if not exists:
            os.rename(tmp, folder)
        else:
            for name in written:
                os.replace(os.path.join(tmp, name), os.path.join(folder, name))
            stem, _, ext = weights_name.rpartition(".")
            pattern = re.compile(re.escape(stem) + _SHARD_PATTERN.format(ext=re.escape(ext)))
            for name in os.listdir(folder):
                if pattern.fullmatch(name) and name not in written:
                    os.remove(os.path.join(folder, name))
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return [os.path.join(folder, name) for name in written]
