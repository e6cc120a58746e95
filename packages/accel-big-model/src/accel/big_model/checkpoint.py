"""Checkpoint IO: single files, folders, and sharded checkpoints with an index.

The public names of the checkpoint modules in one place: locating files
(:mod:`~accel.big_model.checkpoint_files`), reading shards
(:mod:`~accel.big_model.shard_reader`), loading into a model
(:mod:`~accel.big_model.checkpoint_loading`, planned by :mod:`~accel.big_model.load_plan`) and
writing (:mod:`~accel.big_model.shard_writer`).

Reading never executes code from a file (safetensors, or ``torch.load(weights_only=True)``),
goes shard by shard, and refuses an index that names a file outside its folder. Writing is
atomic and stores tensors that share memory (tied weights) once.

Example:
    >>> import os, tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_sharded_safetensors({"w": torch.ones(2)}, folder)
    >>> load_state_dict(os.path.join(folder, SAFE_WEIGHTS_NAME))
    {'w': tensor([1., 1.])}
"""

from __future__ import annotations

from accel.big_model.checkpoint_files import (
    ALIASES_KEY,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    checkpoint_files,
    is_safetensors,
    read_checkpoint_index,
)
from accel.big_model.checkpoint_loading import load_checkpoint_in_model
from accel.big_model.shard_reader import load_state_dict
from accel.big_model.shard_writer import (
    dedupe_shared_tensors,
    save_sharded_safetensors,
    shard_checkpoint,
    write_sharded_checkpoint,
)

__all__ = [
    "ALIASES_KEY",
    "SAFE_WEIGHTS_INDEX_NAME",
    "SAFE_WEIGHTS_NAME",
    "WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
    "CheckpointError",
    "checkpoint_files",
    "dedupe_shared_tensors",
    "is_safetensors",
    "load_checkpoint_in_model",
    "load_state_dict",
    "read_checkpoint_index",
    "save_sharded_safetensors",
    "shard_checkpoint",
    "write_sharded_checkpoint",
]
