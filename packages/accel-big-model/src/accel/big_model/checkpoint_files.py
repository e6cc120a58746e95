"""Locating checkpoint files: file names, index reading, and the shard-path safety check.

An index that names a file outside its folder is refused, checked lexically so that symlinked
shards (the Hugging Face cache's) still work.

Example:
    >>> is_safetensors("model-00001-of-00002.safetensors"), WEIGHTS_NAME
    (True, 'pytorch_model.bin')
"""

from __future__ import annotations

import json
import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
ALIASES_KEY = "accel_aliases"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable file, bad index, or keys that do not fit.

    Example:
        >>> issubclass(CheckpointError, ValueError)
        True
    """


# --------------------------------------------------------------------------- locating files


def _inside(folder: str, name: str, source: str) -> str:
    """``folder/name``, refusing names that leave ``folder`` (checked lexically, so symlinked
    shards such as the Hugging Face cache's still work)."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or "\\" in name:
        raise CheckpointError(f"{source} names shard {name!r}, which is not a relative file name")
    root = os.path.normpath(os.path.abspath(folder))
    path = os.path.normpath(os.path.join(root, name))
    if os.path.dirname(path) != root and not path.startswith(root + os.sep):
        raise CheckpointError(
            f"{source} names shard {name!r}, which is outside the checkpoint folder {root!r}; "
            "refusing to read it"
        )
    return path


def read_checkpoint_index(index_file: PathLike) -> dict[str, str]:
    """The ``weight_map`` of a sharded-checkpoint index, as ``{key: absolute shard path}``.

    Every shard must lie inside the index's folder and exist.

    Example:
        >>> import tempfile, torch
        >>> from accel.big_model.shard_writer import save_sharded_safetensors
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_sharded_safetensors({"w": torch.ones(4)}, folder, max_shard_size=8)
        >>> _ = save_sharded_safetensors({"a": torch.ones(4), "b": torch.ones(4)}, folder, max_shard_size=16)
        >>> sorted(os.path.basename(p) for p in read_checkpoint_index(
        ...     os.path.join(folder, "model.safetensors.index.json")).values())
        ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
    """
    index_file = os.fspath(index_file)
    source = f"checkpoint index {index_file!r}"
    try:
        with open(index_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{source} is not valid JSON: {err}") from None
    if isinstance(data, dict) and "weight_map" in data:
        data = data["weight_map"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} must map weight names to shard files ('weight_map')")
    folder = os.path.dirname(os.path.abspath(index_file))
    result = {key: _inside(folder, name, source) for key, name in data.items()}
    missing = sorted({p for p in result.values() if not os.path.isfile(p)})
    if missing:
        raise CheckpointError(f"{source} names shards that do not exist: {', '.join(missing)}")
    return result


def checkpoint_files(checkpoint: PathLike) -> list[str]:
    """The weight files to read for ``checkpoint``: a weights file, an index (its shards), or a
    folder holding ``model.safetensors``, ``pytorch_model.bin`` or exactly one index.

    Example:
        >>> import tempfile, torch
        >>> from accel.big_model.shard_writer import save_sharded_safetensors
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_sharded_safetensors({"w": torch.ones(2)}, folder)
        >>> [os.path.basename(p) for p in checkpoint_files(folder)]
        ['model.safetensors']
    """
    checkpoint = os.fspath(checkpoint)
    if os.path.isfile(checkpoint):
        if checkpoint.endswith(".json"):
            return sorted(set(read_checkpoint_index(checkpoint).values()))
        return [checkpoint]
    if not os.path.isdir(checkpoint):
        raise CheckpointError(
            f"checkpoint {checkpoint!r} does not exist; pass a weights file, an index "
            f"(*.index.json) or a folder holding {SAFE_WEIGHTS_NAME}, {WEIGHTS_NAME} or an index"
        )
    for single in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME):
        if os.path.isfile(os.path.join(checkpoint, single)):
            return [os.path.join(checkpoint, single)]
    indexes = sorted(f for f in os.listdir(checkpoint) if f.endswith(".index.json"))
    if SAFE_WEIGHTS_INDEX_NAME in indexes:
        indexes = [SAFE_WEIGHTS_INDEX_NAME]
    if len(indexes) != 1:
        found = f"several indexes ({', '.join(indexes)})" if indexes else "no index"
        raise CheckpointError(
            f"checkpoint folder {checkpoint!r} has no {SAFE_WEIGHTS_NAME} or {WEIGHTS_NAME} and "
            f"{found}; it needs exactly one *.index.json"
        )
    return sorted(set(read_checkpoint_index(os.path.join(checkpoint, indexes[0])).values()))


def is_safetensors(path: str) -> bool:
    """Whether ``path`` names a safetensors file (by its extension).

    Example:
        >>> is_safetensors("pytorch_model.bin")
        False
    """
    return path.endswith(".safetensors")
