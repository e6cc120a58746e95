"""Training checkpoints: what ``Accelerator.save_state``/``load_state`` write and read.

One module per concern, each importing only those above it:

- :mod:`~accel.core.checkpoint.layout`: file names, numbering, the completion marker;
- :mod:`~accel.core.checkpoint.errors` and :mod:`~accel.core.checkpoint.unpickling`: refusing
  corrupt files and files that would run code;
- :mod:`~accel.core.checkpoint.writer` (with :mod:`~accel.core.checkpoint.direct_io` and
  :mod:`~accel.core.checkpoint.async_writer`): writing files, now or in the background;
- :mod:`~accel.core.checkpoint.reader`: parallel reads of safetensors and ``torch.save`` files;
- :mod:`~accel.core.checkpoint.folders`: finding, publishing and pruning checkpoint folders;
- :mod:`~accel.core.checkpoint.rng`, :mod:`~accel.core.checkpoint.gradients`: RNG states,
  dataloader positions and accumulated gradients;
- :mod:`~accel.core.checkpoint.contents` and :mod:`~accel.core.checkpoint.loading`: the files
  of one checkpoint, collected for saving, checked and applied when loading;
- :mod:`~accel.core.checkpoint.hooks`, :mod:`~accel.core.checkpoint.state`: the Accelerator's
  hooks and its ``save_state``/``load_state``;
- :mod:`~accel.core.checkpoint.fsdp`: Accelerate's FSDP checkpoint functions.

Names load on first use.

Example:
    >>> from accel.core.checkpoint import latest_checkpoint
    >>> latest_checkpoint("does/not/exist") is None
    True
"""

from __future__ import annotations

from accel.state.lazy import lazy_exports

_EXPORTS = {
    "COMPLETE_MARKER": ".layout",
    "CUSTOM_NAME": ".layout",
    "FSDP_MODEL_NAME": ".layout",
    "MODEL_NAME": ".layout",
    "OPTIMIZER_NAME": ".layout",
    "RNG_STATE_NAME": ".layout",
    "SAFE_MODEL_NAME": ".layout",
    "SAMPLER_NAME": ".layout",
    "SCALER_NAME": ".layout",
    "SCHEDULER_NAME": ".layout",
    "CheckpointFile": ".writer",
    "CheckpointWriteError": ".async_writer",
    "CorruptCheckpointError": ".errors",
    "UnsafeCheckpointError": ".errors",
    "is_complete_checkpoint": ".folders",
    "latest_checkpoint": ".folders",
    "safe_load": ".unpickling",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
