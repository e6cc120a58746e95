"""Checkpoint IO: single files, folders, and sharded checkpoints with an index.

Reading never executes code from a file (safetensors, or ``torch.load(weights_only=True)``),
goes shard by shard, and refuses an index that names a file outside its folder. Modules
mapped to ``"disk"`` are not copied anywhere when the checkpoint is safetensors: the offload
index points at the shard and the weights are read from it in place at forward time.

Writing (:func:`save_sharded_safetensors`) is atomic and stores tensors that share memory
(tied weights) once.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import torch
from torch import nn

from accel.big_model.device_map import check_device_values
from accel.big_model.offload import SAFETENSORS_DTYPES, offload_weight, save_offload_index
from accel.big_model.sizes import _as_dtype, convert_file_size_to_int
from accel.big_model.tensors import _torch_device, set_module_tensor_to_device
from accel.big_model.tied import find_tied_parameters, retie_parameters
from accel.state.process_logging import library_logger
from accel.state.progress import progress_bar

logger = library_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Device = Union[int, str, torch.device]  # noqa: UP007 - runtime alias

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
        >>> import tempfile
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


def _checkpoint_files(checkpoint: PathLike) -> list[str]:
    """The files to read for ``checkpoint`` (a file, an index, or a folder)."""
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


# --------------------------------------------------------------------------- reading shards


def _is_safetensors(path: str) -> bool:
    return path.endswith(".safetensors")


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


class _Shard:
    """One checkpoint file: key listing with shapes and dtypes, then per-key reads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.safetensors = _is_safetensors(path)
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

    def all_keys(self) -> list[str]:
        return self._keys + [a for a in self.aliases if a not in set(self._keys)]

    def stored_name(self, key: str) -> str:
        return self.aliases.get(key, key)

    def info(self, key: str) -> tuple[tuple[int, ...], torch.dtype | None]:
        name = self.stored_name(key)
        if self._state is not None:
            tensor = self._state[name]
            return tuple(tensor.shape), tensor.dtype
        piece = self._handle("cpu").get_slice(name)
        return tuple(piece.get_shape()), SAFETENSORS_DTYPES.get(piece.get_dtype())

    def get(self, key: str, device: Device = "cpu") -> torch.Tensor:
        name = self.stored_name(key)
        if self._state is not None:
            return self._state[name]
        target = _torch_device(device) if device not in ("disk", "meta") else "cpu"
        try:
            return self._handle(target).get_tensor(name)
        except CheckpointError:
            raise
        except Exception as err:
            raise CheckpointError(
                f"cannot read tensor {name!r} from safetensors file {self.path!r}: {err}"
            ) from None

    def close(self) -> None:
        self._handles.clear()
        self._state = None


def _readahead(paths: list[str]) -> None:
    """Have the kernel start reading ``paths`` into the page cache (one background thread,
    ``posix_fadvise(WILLNEED)``): safetensors weights are memory-mapped and otherwise read
    page fault by page fault when first used, far slower than large reads on a cold cache."""
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


def _populate(ranges: list[tuple[int, int]]) -> None:
    """Map in, in one background thread, the pages of memory-mapped CPU weights just loaded
    (``madvise(MADV_POPULATE_READ)``, Linux >= 5.14; elsewhere nothing happens), so the first
    forward does not take one page fault per 64 KiB of weights. Purely advisory: a range that
    is no longer mapped is skipped by the kernel."""
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


def _device_for(name: str, device_map: Mapping[str, Any]) -> Any:
    probe = name
    while probe not in device_map:
        if not probe:
            return _NO_DEVICE
        probe = probe.rpartition(".")[0]
    return device_map[probe]


_NO_DEVICE = object()


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
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_sharded_safetensors({"w": torch.ones(2)}, folder)
        >>> load_state_dict(os.path.join(folder, "model.safetensors"))
        {'w': tensor([1., 1.])}
    """
    path = os.fspath(checkpoint_file)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    shard = _Shard(path)
    try:
        result: dict[str, torch.Tensor] = {}
        for key in shard._keys:
            device: Any = "cpu"
            if device_map is not None:
                device = _device_for(key, device_map)
                if device is _NO_DEVICE or device == "disk":
                    device = "cpu"
            result[key] = shard.get(key, device)
        for alias, key in shard.aliases.items():
            result.setdefault(alias, result[key])
        return result
    finally:
        shard.close()


# --------------------------------------------------------------------------- loading a model


def _keeps_fp32(name: str, keep_in_fp32_modules: Iterable[str] | None) -> bool:
    return any(name == key or f"{key}." in name for key in keep_in_fp32_modules or ())


def _target_dtype(
    name: str,
    stored: torch.dtype | None,
    current: torch.dtype,
    dtype: torch.dtype | None,
    keep_in_fp32_modules: Iterable[str] | None,
) -> torch.dtype | None:
    """The dtype a weight is loaded in (``None``: the model's current dtype)."""
    if dtype is None or stored is None or not stored.is_floating_point:
        return None
    if dtype in (torch.float16, torch.bfloat16) and _keeps_fp32(name, keep_in_fp32_modules):
        return torch.float32
    return dtype


def _plan(
    model: nn.Module,
    shards: list[_Shard],
    device_map: Mapping[str, Any] | None,
    strict: bool,
    tied_params: list[list[str]],
    source: str,
) -> dict[str, _Shard]:
    """Which shard provides each model key; raises on shape or (with ``strict``) key errors."""
    model_state = model.state_dict(keep_vars=True)
    owner: dict[str, _Shard] = {}
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
        if device_map is not None and _device_for(key, device_map) is _NO_DEVICE:
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
    dtype = None if dtype is None else _as_dtype(dtype)
    tied_params = find_tied_parameters(model)
    files = _checkpoint_files(checkpoint)
    shards = [_Shard(path) for path in files]
    try:
        plan = _plan(model, shards, device_map, strict, tied_params, source)
        model_state = model.state_dict(keep_vars=True)
        buffers = {name for name, _ in model.named_buffers()}
        offload_index: dict[str, dict[str, Any]] = {}
        disk_keys = [
            k for k in plan if device_map is not None and _device_for(k, device_map) == "disk"
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
        _readahead([s.path for s in shards if s in in_memory])
        mapped: list[tuple[int, int]] = []

        for shard in progress_bar(shards, desc="Loading checkpoint shards", unit="shard"):
            for key in [k for k, s in plan.items() if s is shard]:
                current = model_state[key]
                stored_shape, stored_dtype = shard.info(key)
                new_dtype = _target_dtype(
                    key, stored_dtype, current.dtype, dtype, keep_in_fp32_modules
                )
                device = None if device_map is None else _device_for(key, device_map)
                if device == "disk" and (offload_buffers or key not in buffers):
                    final = new_dtype or current.dtype
                    if shard.safetensors:
                        offload_index[key] = {
                            "safetensors_file": os.path.abspath(shard.path),
                            "weight_name": shard.stored_name(key),
                            "dtype": str(final).replace("torch.", ""),
                            "shape": list(stored_shape),
                        }
                    else:
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
    _populate(mapped)

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
        model._accel_offload_index = index


# --------------------------------------------------------------------------- writing


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


def _dedupe(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU tensors sharing no memory, plus ``{alias: kept name}`` for names that were the very
    same view of one storage (tied weights). Distinct views of one storage become copies."""
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
        >>> sorted(load_state_dict(paths[0]))
        ['emb', 'head']
    """
    from safetensors.torch import save_file

    kept, aliases = _dedupe(state_dict)

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
