"""The files of a checkpoint as data: collected once, then written now or staged for later.

``save_state`` turns the training state into a list of :class:`CheckpointFile` (a name, a
payload, a format). Writing them is separate from collecting them, which gives two things:

- a synchronous save writes the files in parallel threads (safetensors and ``torch.save``
  release the GIL while they copy bytes), each flushed to disk by the thread that wrote it;
- an asynchronous save first copies every tensor of the payloads into CPU buffers
  (:class:`CpuStager`, reused from one save to the next) and writes the copies in the
  background while training goes on.

Example:
    >>> files = [CheckpointFile("extra.bin", {"step": 3}, "torch")]
    >>> write_files("/tmp/ckpt", files)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import torch

from accel.big_model.checkpoint import ALIASES_KEY, dedupe_shared_tensors
from accel.core.checkpoint.direct_io import DirectWriter, save_safetensors
from accel.state.progress import SilentBar, progress_bar

FileFormat = Literal["safetensors", "torch"]

# More writers than cores only add seeks; two keep a disk and the CPU side of
# serialization busy at once on small machines.
_MAX_WRITERS = 4
_PARALLEL_COPY_BYTES = 256 << 20
_DIRECT_BYTES = 64 << 20


@dataclass
class CheckpointFile:
    """One file of a checkpoint: its name in the folder, what goes in it, and how.

    ``safetensors`` payloads are flat ``{name: tensor}`` dicts (tensors sharing memory are
    stored once, the aliases recorded in the metadata); ``torch`` payloads are anything
    ``torch.save`` writes and ``torch.load(weights_only=True)`` reads back.

    Example:
        >>> CheckpointFile("optimizer.bin", {"state": {}, "param_groups": []}, "torch").name
        'optimizer.bin'
    """

    name: str
    payload: Any
    format: FileFormat = "torch"

    @property
    def size(self) -> int:
        """Bytes of tensor data in the payload (used to start the biggest writes first).

        Example:
            >>> CheckpointFile("a.bin", {"x": torch.zeros(4)}).size
            16
        """
        return sum(t.numel() * t.element_size() for t in tensors_of(self.payload))


def tensors_of(obj: Any) -> list[torch.Tensor]:
    """Every tensor inside a payload of nested dicts, lists and tuples.

    Example:
        >>> len(tensors_of({"a": [torch.zeros(1), 2], "b": torch.ones(2)}))
        2
    """
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for value in obj.values() for t in tensors_of(value)]
    if isinstance(obj, (list, tuple)):
        return [t for value in obj for t in tensors_of(value)]
    return []


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(folder: str, file: CheckpointFile, durable: bool = True) -> str:
    """Write one :class:`CheckpointFile` into ``folder``; with ``durable``, flush it to disk.

    Example:
        >>> write_file("/tmp/ckpt", CheckpointFile("scaler.pt", {"scale": 1.0}))  # doctest: +SKIP
        '/tmp/ckpt/scaler.pt'
    """
    path = os.path.join(folder, file.name)
    # Big files go around the page cache (see accel.core.checkpoint.direct_io); DirectWriter flushes.
    direct = durable and file.size >= _DIRECT_BYTES
    if file.format == "safetensors":
        from safetensors.torch import save_file

        kept, aliases = dedupe_shared_tensors(file.payload)
        metadata = {"format": "pt"}
        if aliases:
            metadata[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
        if direct:
            save_safetensors(kept, path, metadata=metadata)
            return path
        save_file(kept, path, metadata=metadata)
    elif file.format == "torch":
        if direct:
            with DirectWriter(path) as out:
                # torch.save writes to any object with write(); its FileLike type lists IO[bytes]
                torch.save(file.payload, out)  # pyright: ignore[reportArgumentType]
            return path
        torch.save(file.payload, path)
    else:
        raise ValueError(
            f"checkpoint file {file.name!r} has format {file.format!r}; "
            "valid formats are 'safetensors' and 'torch'"
        )
    if durable:
        _fsync_file(path)
    return path


def write_files(
    folder: str, files: list[CheckpointFile], durable: bool = True, progress: bool = True
) -> list[str]:
    """Write ``files`` into the existing ``folder``, several at a time, biggest first.

    Returns the paths written. The first error is raised once every started write ended.
    With ``progress``, a bar counts the bytes written (where bars are shown: see
    :mod:`accel.state.progress`).

    Example:
        >>> write_files("/tmp/ckpt", [CheckpointFile("a.bin", {"x": 1})])  # doctest: +SKIP
        ['/tmp/ckpt/a.bin']
    """
    ordered = sorted(files, key=lambda f: f.size, reverse=True)
    heavy = [f for f in ordered if f.size > (1 << 20)]
    total = sum(f.size for f in ordered) if progress else 0
    with (
        progress_bar(desc="Saving state", total=total, nbytes=True) if progress else _NO_BAR as bar
    ):
        if len(heavy) < 2:
            return [_counted(bar, f, write_file(folder, f, durable)) for f in ordered]
        workers = min(_MAX_WRITERS, len(heavy), max(os.cpu_count() or 1, 2))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="accel-ckpt") as pool:
            futures = [pool.submit(write_file, folder, f, durable) for f in ordered]
            return [_counted(bar, f, future.result()) for f, future in zip(ordered, futures)]


_NO_BAR = SilentBar()


def _counted(bar: Any, file: CheckpointFile, path: str) -> str:
    bar.update(file.size)
    return path


class CpuStager:
    """Copies checkpoint payloads into CPU buffers that it keeps for the next save.

    Tensors that share memory in the source share one buffer in the copy (tied weights stay
    tied, so they are written once). Buffers are reused when the next save has a tensor of
    the same shape and dtype at the same place, so a training loop that saves every N steps
    allocates once. Non-tensor values are deep-copied. Not thread-safe: stage again only
    after the previous copies were written.

    Example:
        >>> stager = CpuStager()
        >>> staged = stager.stage([CheckpointFile("a.bin", {"w": torch.ones(2)})])
        >>> staged[0].payload["w"]
        tensor([1., 1.])
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[Any, ...], torch.Tensor] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held in staging buffers.

        Example:
            >>> CpuStager().nbytes
            0
        """
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def stage(self, files: list[CheckpointFile]) -> list[CheckpointFile]:
        """Copies of ``files`` whose tensors live in this stager's CPU buffers.

        Example:
            >>> CpuStager().stage([CheckpointFile("a.bin", {"n": 1})])[0].payload
            {'n': 1}
        """
        walk = _StagingWalk(self._buffers)
        staged = [
            CheckpointFile(f.name, walk.copy(f.payload, (f.name,)), format=f.format) for f in files
        ]
        for key in set(self._buffers) - walk.used:  # tensors that no longer occur
            del self._buffers[key]
        _copy_all(walk.copies)
        return staged


def _copy_all(copies: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Run the staging copies; large ones on several threads (``copy_`` releases the GIL, and
    the first copy into a fresh buffer is dominated by page faults, which parallelize)."""
    total = sum(source.numel() * source.element_size() for source, _ in copies)
    workers = min(_MAX_WRITERS, os.cpu_count() or 1, len(copies))
    if total < _PARALLEL_COPY_BYTES or workers < 2:
        for source, buffer in copies:
            buffer.copy_(source, non_blocking=source.device.type == "cuda")
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="accel-stage") as pool:
            for done in [pool.submit(b.copy_, s, non_blocking=s.is_cuda) for s, b in copies]:
                done.result()
    if any(source.device.type == "cuda" for source, _ in copies):
        torch.cuda.synchronize()


class _StagingWalk:
    """One pass of :meth:`CpuStager.stage` over the payloads: decides every buffer first, so
    the copies run back to back afterwards."""

    def __init__(self, buffers: dict[tuple[Any, ...], torch.Tensor]) -> None:
        self.buffers = buffers
        self.used: set[tuple[Any, ...]] = set()
        self.copies: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.aliases: dict[tuple[Any, ...], torch.Tensor] = {}

    def tensor(self, tensor: torch.Tensor, path: tuple[Any, ...]) -> torch.Tensor:
        source = tensor.detach()
        if hasattr(source, "full_tensor"):  # a DTensor: save its full value
            from torch.distributed.tensor import DTensor

            if isinstance(source, DTensor):
                source = source.full_tensor()
        identity = (
            source.device,
            source.untyped_storage().data_ptr() if source.numel() else id(source),
            source.storage_offset(),
            tuple(source.shape),
            tuple(source.stride()),
            source.dtype,
        )
        if identity in self.aliases:
            return self.aliases[identity]
        key = (*path, tuple(source.shape), source.dtype)
        buffer = self.buffers.get(key)
        if buffer is None:
            pin = source.device.type == "cuda"
            buffer = torch.empty(source.shape, dtype=source.dtype, pin_memory=pin)
            self.buffers[key] = buffer
        self.used.add(key)
        self.copies.append((source, buffer))
        self.aliases[identity] = buffer
        return buffer

    def copy(self, obj: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(obj, torch.Tensor):
            return self.tensor(obj, path)
        if isinstance(obj, Mapping):
            items = {k: self.copy(v, (*path, k)) for k, v in obj.items()}
            return OrderedDict(items) if isinstance(obj, OrderedDict) else items
        if isinstance(obj, list):
            return [self.copy(v, (*path, i)) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            items = [self.copy(v, (*path, i)) for i, v in enumerate(obj)]
            return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        return copy.deepcopy(obj)
