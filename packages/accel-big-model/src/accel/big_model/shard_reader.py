"""Reading checkpoint files: one shard at a time, tensor by tensor, never executing code.

Safetensors files are read per tensor straight onto the target device; ``.bin`` files go
through ``torch.load(weights_only=True)``. Two advisory helpers keep cold reads fast: kernel
read-ahead of the shards about to be read, and pre-faulting the pages of memory-mapped weights.

Example:
    >>> import os, tempfile
    >>> from accel.big_model.shard_writer import save_sharded_safetensors
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_sharded_safetensors({"w": torch.zeros(2)}, folder)
    >>> load_state_dict(os.path.join(folder, "model.safetensors"), {"": "cpu"})
    {'w': tensor([0., 0.])}
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Union

import torch

from accel.big_model.checkpoint_files import ALIASES_KEY, CheckpointError, PathLike, is_safetensors
from accel.big_model.device_lookup import device_for
from accel.big_model.offload import SAFETENSORS_DTYPES
from accel.big_model.tensors import torch_device

Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias


def _safe_open(path: str, device: Device = "cpu") -> Any:
    from safetensors import safe_open

    try:
        return safe_open(path, framework="pt", device=device)
    except Exception as err:
        raise CheckpointError(
            f"cannot read safetensors file {path!r}: {err} (is the file truncated or corrupt?)"
        ) from None


def _check_format(path: str, metadata: Mapping[str, str] | None) -> None:
    fmt = (metadata or {}).get("format", "pt")
    if fmt not in ("pt", "tf", "flax", "mlx", "np"):
        raise CheckpointError(f"safetensors file {path!r} has unknown format metadata {fmt!r}")
    if fmt not in ("pt", "np", "mlx"):
        raise CheckpointError(
            f"safetensors file {path!r} was saved from {fmt}; accel needs a PyTorch ('pt') file"
        )


def _torch_load(path: str) -> dict[str, torch.Tensor]:
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint file {path!r} with torch.load(weights_only=True): "
            f"{type(err).__name__}: {err}"
        ) from None
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"checkpoint file {path!r} does not hold a state dict")
    return dict(data)


class ShardReader:
    """One checkpoint file: key listing with shapes and dtypes, then per-key reads.

    A safetensors file is opened lazily per device and read tensor by tensor; a ``.bin`` file is
    loaded once with ``torch.load(weights_only=True, mmap=True)``. Tied tensors saved once (the
    ``accel_aliases`` metadata) are listed and served under every name.

    Example:
        >>> import tempfile
        >>> from accel.big_model.shard_writer import save_sharded_safetensors
        >>> w = torch.ones(2)
        >>> path = save_sharded_safetensors({"a": w, "b": w}, tempfile.mkdtemp())[0]
        >>> shard = ShardReader(path)
        >>> shard.all_keys(), shard.info("b"), shard.get("b")
        (['a', 'b'], ((2,), torch.float32), tensor([1., 1.]))
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.safetensors = is_safetensors(path)
        self._handles: dict[str, Any] = {}
        self._state: dict[str, torch.Tensor] | None = None
        self.aliases: dict[str, str] = {}
        if self.safetensors:
            handle = self._handle("cpu")
            metadata = handle.metadata()
            _check_format(path, metadata)
            self._keys = list(handle.keys())
            raw = (metadata or {}).get(ALIASES_KEY)
            if raw:
                self.aliases = {a: k for a, k in json.loads(raw).items() if k in set(self._keys)}
        else:
            self._state = _torch_load(path)
            self._keys = list(self._state)

    def _handle(self, device: Device) -> Any:
        key = str(device)
        if key not in self._handles:
            self._handles[key] = _safe_open(self.path, device)
        return self._handles[key]

    @property
    def keys(self) -> list[str]:
        """The tensor names stored in the file (aliases not included)."""
        return self._keys

    def all_keys(self) -> list[str]:
        """Stored names, then the aliases of tied tensors."""
        return self._keys + [a for a in self.aliases if a not in set(self._keys)]

    def stored_name(self, key: str) -> str:
        """The name ``key`` is stored under (itself, or the tensor it is an alias of)."""
        return self.aliases.get(key, key)

    def info(self, key: str) -> tuple[tuple[int, ...], torch.dtype | None]:
        """``(shape, dtype)`` of ``key`` without reading its data."""
        name = self.stored_name(key)
        if self._state is not None:
            tensor = self._state[name]
            return tuple(tensor.shape), tensor.dtype
        piece = self._handle("cpu").get_slice(name)
        return tuple(piece.get_shape()), SAFETENSORS_DTYPES.get(piece.get_dtype())

    def get(self, key: str, device: Device = "cpu") -> torch.Tensor:
        """The tensor ``key``, read onto ``device`` (``"disk"``/``"meta"`` read onto CPU)."""
        name = self.stored_name(key)
        if self._state is not None:
            return self._state[name]
        target = torch_device(device) if device not in ("disk", "meta") else "cpu"
        try:
            return self._handle(target).get_tensor(name)
        except CheckpointError:
            raise
        except Exception as err:
            raise CheckpointError(
                f"cannot read tensor {name!r} from safetensors file {self.path!r}: {err}"
            ) from None

    def close(self) -> None:
        """Drop open handles and a loaded ``.bin`` state dict."""
        self._handles.clear()
        self._state = None


def readahead(paths: list[str]) -> None:
    """Have the kernel start reading ``paths`` into the page cache (one background thread,
    ``posix_fadvise(WILLNEED)``): safetensors weights are memory-mapped and otherwise read
    page fault by page fault when first used, far slower than large reads on a cold cache.

    Example:
        >>> readahead([])
    """
    if not paths or not hasattr(os, "posix_fadvise"):
        return

    def run() -> None:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)
            except OSError:
                pass

    threading.Thread(target=run, name="accel-readahead", daemon=True).start()


def populate_pages(ranges: list[tuple[int, int]]) -> None:
    """Map in, in one background thread, the pages of memory-mapped CPU weights just loaded
    (``madvise(MADV_POPULATE_READ)``, Linux >= 5.14; elsewhere nothing happens), so the first
    forward does not take one page fault per 64 KiB of weights. Purely advisory: a range that
    is no longer mapped is skipped by the kernel. ``ranges`` are ``(address, nbytes)`` pairs.

    Example:
        >>> populate_pages([])
    """
    if not ranges or not sys.platform.startswith("linux"):
        return

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            madvise = libc.madvise
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        except (OSError, AttributeError):
            return
        page = mmap.PAGESIZE
        for address, nbytes in ranges:
            start = address - address % page
            failed = madvise(start, address + nbytes - start, 22) != 0  # MADV_POPULATE_READ
            if failed and ctypes.get_errno() == errno.EINVAL:
                return  # kernel without MADV_POPULATE_READ

    threading.Thread(target=run, name="accel-populate", daemon=True).start()


def load_state_dict(
    checkpoint_file: PathLike, device_map: Mapping[str, Device] | None = None
) -> dict[str, torch.Tensor]:
    """Read one checkpoint file into a state dict.

    A safetensors file is read tensor by tensor straight onto the device ``device_map`` gives
    each key's module (``"disk"`` and unmapped keys go to CPU); a ``.bin`` file goes through
    ``torch.load(weights_only=True, mmap=True)`` onto CPU. Tied tensors saved once by
    :func:`save_sharded_safetensors` come back under all their names, sharing one tensor.

    Example:
        >>> import tempfile
        >>> from accel.big_model.shard_writer import save_sharded_safetensors
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_sharded_safetensors({"w": torch.ones(2)}, folder)
        >>> load_state_dict(os.path.join(folder, "model.safetensors"))
        {'w': tensor([1., 1.])}
    """
    path = os.fspath(checkpoint_file)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    shard = ShardReader(path)
    try:
        result: dict[str, torch.Tensor] = {}
        for key in shard.keys:
            device: Any = "cpu"
            if device_map is not None:
                device = device_for(device_map, key, default="cpu")
                if device == "disk":
                    device = "cpu"
            result[key] = shard.get(key, device)
        for alias, key in shard.aliases.items():
            result.setdefault(alias, result[key])
        return result
    finally:
        shard.close()
