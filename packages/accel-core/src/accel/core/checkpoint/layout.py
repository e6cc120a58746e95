"""What a training checkpoint folder holds: the file names, their numbering, the marker.

A checkpoint is a folder in Accelerate's layout, so it moves between accel and Accelerate in
both directions:

- ``model.safetensors``, ``model_1.safetensors``, ... (``pytorch_model.bin``, ... with
  ``safe_serialization=False``): the prepared models' weights, unwrapped (no ``module.``);
- ``optimizer.bin``, ``optimizer_1.bin``, ...; ``scheduler.bin``, ...; ``scaler.pt``;
- ``random_states_{rank}.pkl``: the step counter, the RNG states of ``random``, numpy and torch
  of each process, and (accel only, ignored by Accelerate) each prepared dataloader's position
  with the RNG states its current pass drew its order from;
- ``custom_checkpoint_{i}.pkl``: the objects passed to ``register_for_checkpointing``;
- ``accel_gradients_{rank}.safetensors``: each process's accumulated gradients, when the save
  falls inside a gradient accumulation window (accel only, ignored by Accelerate);
- ``accel_checkpoint.json``: the completion marker (accel only, ignored by Accelerate).

Example:
    >>> numbered(OPTIMIZER_NAME, 1, ".bin")
    'optimizer_1.bin'
"""

from __future__ import annotations

import os
import re

__all__ = [
    "COMPLETE_MARKER",
    "CUSTOM_NAME",
    "FORMAT_VERSION",
    "FSDP_MODEL_NAME",
    "MODEL_NAME",
    "OPTIMIZER_NAME",
    "RNG_STATE_NAME",
    "SAFE_MODEL_NAME",
    "SAMPLER_NAME",
    "SCALER_NAME",
    "SCHEDULER_NAME",
    "numbered",
]

SAFE_MODEL_NAME = "model"
MODEL_NAME = "pytorch_model"
FSDP_MODEL_NAME = "pytorch_model_fsdp"
OPTIMIZER_NAME = "optimizer"
SCHEDULER_NAME = "scheduler"
SCALER_NAME = "scaler.pt"
RNG_STATE_NAME = "random_states"
SAMPLER_NAME = "sampler"
CUSTOM_NAME = "custom_checkpoint"
COMPLETE_MARKER = "accel_checkpoint.json"
FORMAT_VERSION = 1
#: Key of the dataloader positions inside ``random_states_{rank}.pkl`` (accel only).
DATALOADER_KEY = "accel_dataloaders"
PARTIAL_SUFFIX = ".partial"
DELETING_SUFFIX = ".deleting"
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")

PathLike = str | os.PathLike


def numbered(stem: str, index: int, ext: str) -> str:
    """The file name of the ``index``-th object of a kind (the first one has no number).

    Example:
        >>> numbered(SAFE_MODEL_NAME, 0, ".safetensors")
        'model.safetensors'
    """
    return f"{stem}{ext}" if index == 0 else f"{stem}_{index}{ext}"
