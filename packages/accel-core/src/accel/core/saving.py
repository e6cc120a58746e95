"""Saving objects and model weights from a (possibly distributed) training script.

:func:`save` replaces ``torch.save``: it writes once (on the main process, or once per node),
through a temporary file renamed into place, so a crash never leaves half a file.
:func:`save_model` writes a model's weights in the layout transformers and Accelerate use
(``model.safetensors`` or shards + ``model.safetensors.index.json``; ``pytorch_model.bin``
and ``pytorch_model.bin.index.json`` with ``safe_serialization=False``).

Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "obj.pt")
    >>> save({"a": 1}, path)
    >>> torch.load(path)
    {'a': 1}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, BinaryIO, Protocol

import torch

from accel.big_model.checkpoint import (
    ALIASES_KEY,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    dedupe_shared_tensors,
    save_sharded_safetensors,
    write_sharded_checkpoint,
)
from accel.state import PartialState
from accel.state.atomic_files import atomic_path


class ModelSource(Protocol):
    """What :func:`save_model` uses of an ``Accelerator`` (its public API).

    Example:
        >>> from accel.core import Accelerator
        >>> all(hasattr(Accelerator, n) for n in ("unwrap_model", "get_state_dict"))
        True
    """

    project_configuration: Any

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def get_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]: ...


__all__ = [
    "SAFE_WEIGHTS_INDEX_NAME",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_PATTERN_NAME",
    "WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
    "WEIGHTS_PATTERN_NAME",
    "load",
    "save",
    "save_model",
]

PathLike = str | os.PathLike

#: File-name patterns of numbered weight shards (``suffix`` like ``-00001-of-00002``).
WEIGHTS_PATTERN_NAME = "pytorch_model{suffix}.bin"
SAFE_WEIGHTS_PATTERN_NAME = "model{suffix}.safetensors"


def _should_write(save_on_each_node: bool) -> bool:
    state = PartialState()
    return state.is_local_main_process if save_on_each_node else state.is_main_process


def _save_safetensors(obj: Any, target: str) -> None:
    from safetensors.torch import save_file

    if not isinstance(obj, Mapping):
        raise TypeError(
            f"safe_serialization=True saves a dict of tensors, got {type(obj).__name__}; "
            "use safe_serialization=False for other objects"
        )
    kept, aliases = dedupe_shared_tensors(obj)
    metadata = {"format": "pt"}
    if aliases:
        metadata[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    save_file(kept, target, metadata=metadata)


def save(
    obj: Any,
    f: PathLike | BinaryIO,
    save_on_each_node: bool = False,
    safe_serialization: bool = False,
) -> None:
    """Save ``obj`` to ``f`` once: on the main process (or each node's main process).

    Use in place of ``torch.save``. With ``safe_serialization=True``, ``obj`` must be a dict of
    tensors and is written as safetensors (tensors sharing memory are stored once). A path is
    written atomically (temporary file in the same folder, then rename); a file object is
    written directly. Other processes return without writing.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
        >>> save({"w": torch.zeros(2)}, path, safe_serialization=True)
        >>> os.path.exists(path)
        True
    """
    if not _should_write(save_on_each_node):
        return
    if safe_serialization:
        if not isinstance(f, str | os.PathLike):
            raise TypeError("safe_serialization=True needs a file path, not a file object")
        with atomic_path(f) as tmp:
            _save_safetensors(obj, tmp)
    elif isinstance(f, str | os.PathLike):
        with atomic_path(f) as tmp:
            torch.save(obj, tmp)
    else:
        torch.save(obj, f)


def _save_sharded_bin(
    state_dict: Mapping[str, torch.Tensor], folder: str, max_shard_size: int | str
) -> list[str]:
    """``torch.save`` shards of ``state_dict`` (+ index when sharded), atomically."""
    cpu = {k: v.detach().to("cpu") for k, v in state_dict.items()}
    return write_sharded_checkpoint(cpu, folder, torch.save, max_shard_size, WEIGHTS_NAME)


def save_model(
    accelerator: ModelSource,
    model: torch.nn.Module,
    save_directory: PathLike,
    max_shard_size: int | str = "10GB",
    safe_serialization: bool = True,
) -> list[str]:
    """Write ``model``'s weights to ``save_directory`` (what :meth:`Accelerator.save_model` does).

    The state dict is gathered first (every process must call this under FSDP); then the main
    process (each node's, with ``ProjectConfiguration(save_on_each_node=True)``) writes
    safetensors shards of at most ``max_shard_size`` with ``model.safetensors.index.json``, or
    ``pytorch_model*.bin`` with ``pytorch_model.bin.index.json`` when
    ``safe_serialization=False``. Tied weights are stored once. Shards of an earlier save that
    the new one does not overwrite are removed. Returns the written paths (empty on processes
    that do not write).

    Example:
        >>> save_model(accelerator, model, "out", max_shard_size="1GB")  # doctest: +SKIP
    """
    folder = os.path.abspath(os.fspath(save_directory))
    if os.path.isfile(folder):
        raise NotADirectoryError(
            f"save_model: save_directory={os.fspath(save_directory)!r} is a file; give a folder"
        )
    inner = accelerator.unwrap_model(model)
    meta = [n for n, p in inner.named_parameters() if p.device.type == "meta"]
    if meta:
        raise RuntimeError(
            f"save_model: {len(meta)} parameter(s) are on the meta device and have no data to "
            f"save (first: {meta[0]!r}); load or materialize the weights first"
        )
    state_dict = accelerator.get_state_dict(model)
    if state_dict is None:  # a strategy that gathers onto the main process only
        return []
    if not _should_write(accelerator.project_configuration.save_on_each_node):
        return []
    if safe_serialization:
        return save_sharded_safetensors(state_dict, folder, max_shard_size, SAFE_WEIGHTS_NAME)
    return _save_sharded_bin(state_dict, folder, max_shard_size)


def load(f: PathLike | BinaryIO, map_location: Any = None, **kwargs: Any) -> Any:
    """``torch.load`` with ``weights_only=True`` unless the caller passes
    ``weights_only=False`` (then the file may run code when unpickled: trusted files only).

    Example:
        >>> import io
        >>> buffer = io.BytesIO()
        >>> torch.save({"step": 1}, buffer)
        >>> _ = buffer.seek(0)
        >>> load(buffer)
        {'step': 1}
    """
    kwargs.setdefault("weights_only", True)
    return torch.load(f, map_location=map_location, **kwargs)
