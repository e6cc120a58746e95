"""Offloaded weights: raw ``.dat`` files in a folder, and lazy maps that read weights on demand.

The offload folder format is Accelerate's: one ``<name>.dat`` file per tensor (its bytes,
C order; bfloat16 and float8 stored as raw 2- and 1-byte words) and an ``index.json`` mapping
each name to ``{"dtype": ..., "shape": [...]}``. An index entry may instead name a safetensors
file (``{"safetensors_file": path, "weight_name": key, "dtype": ...}``): the weight is then read
from that file in place, never copied. This is how accel serves disk-offloaded modules straight
from a checkpoint's shards.

Files are written atomically (temporary name, then rename) and read without executing code.
numpy is not needed.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Union

import torch
from torch import nn

from accel.state.atomic_files import atomic_open
from accel.state.progress import progress_bar

PathLike = Union[str, "os.PathLike[str]"]

INDEX_NAME = "index.json"


def _dtype_name(dtype: torch.dtype) -> str:
    """The index spelling of ``dtype`` (numpy's name; ``bfloat16``/``float8_*`` kept as is)."""
    return str(dtype).replace("torch.", "")


def _dtype_from_name(name: str) -> torch.dtype:
    resolved = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"offload index names an unknown dtype {name!r}")
    return resolved


def check_weight_name(name: str, source: str = "offload index") -> str:
    """Refuse a weight name that would point outside the offload folder once made a file name.

    Example:
        >>> check_weight_name("layer.0.weight")
        'layer.0.weight'
    """
    parts = name.replace("\\", "/").split("/")
    if not name or len(parts) > 1 or name in (".", "..") or os.path.isabs(name):
        raise ValueError(
            f"{source} names weight {name!r}, which is not a plain tensor name (it would point "
            "outside the offload folder); refusing it"
        )
    return name


def _raw_view(tensor: torch.Tensor) -> ctypes.Array:
    """A zero-copy buffer over the bytes of a contiguous CPU tensor."""
    nbytes = tensor.numel() * tensor.element_size()
    return (ctypes.c_char * nbytes).from_address(tensor.data_ptr())


def offload_weight(
    weight: torch.Tensor,
    weight_name: str,
    offload_folder: PathLike,
    index: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]] | None:
    """Write ``weight`` to ``<offload_folder>/<weight_name>.dat`` and record it in ``index``.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> offload_weight(torch.ones(2, 3), "w", folder, index={})
        {'w': {'dtype': 'float32', 'shape': [2, 3]}}
    """
    check_weight_name(weight_name)
    data = weight.detach().to("cpu").contiguous()
    path = os.path.join(os.fspath(offload_folder), f"{weight_name}.dat")
    # Offload files are scratch copies of weights held elsewhere: atomic, not fsynced.
    with atomic_open(path, "wb", fsync=False) as handle:
        if data.numel() > 0:
            handle.write(_raw_view(data))
    if index is not None:
        index[weight_name] = {"dtype": _dtype_name(weight.dtype), "shape": list(weight.shape)}
    return index


def load_offloaded_weight(weight_file: PathLike, weight_info: Mapping[str, Any]) -> torch.Tensor:
    """Read one tensor written by :func:`offload_weight` (into memory it owns).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> info = offload_weight(torch.arange(3.0), "w", folder, index={})["w"]
        >>> load_offloaded_weight(os.path.join(folder, "w.dat"), info)
        tensor([0., 1., 2.])
    """
    shape = tuple(int(s) for s in weight_info["shape"])
    dtype = _dtype_from_name(str(weight_info["dtype"]))
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    size = os.path.getsize(weight_file)
    if size < nbytes:
        raise ValueError(
            f"offloaded weight file {os.fspath(weight_file)!r} holds {size} bytes but its index "
            f"entry ({weight_info['dtype']}, shape {list(shape)}) needs {nbytes}; the file is "
            "truncated or does not belong to this index"
        )
    if nbytes:
        with open(weight_file, "rb") as handle:
            handle.readinto(_raw_view(out))
    return out


def save_offload_index(index: Mapping[str, Any] | None, offload_folder: PathLike) -> None:
    """Merge ``index`` into ``<offload_folder>/index.json`` (written atomically).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> save_offload_index({"w": {"dtype": "float32", "shape": [1]}}, folder)
        >>> sorted(os.listdir(folder))
        ['index.json']
    """
    if not index:
        return
    path = os.path.join(os.fspath(offload_folder), INDEX_NAME)
    current: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            current = json.load(handle)
    current.update(index)
    with atomic_open(path, "w", fsync=False) as handle:
        handle.write(json.dumps(current, indent=2))


def read_offload_index(offload_folder: PathLike) -> dict[str, dict[str, Any]]:
    """The ``index.json`` of an offload folder, with every weight name checked.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> offload_state_dict(folder, {"w": torch.zeros(1)})
        >>> read_offload_index(folder)
        {'w': {'dtype': 'float32', 'shape': [1]}}
    """
    path = os.path.join(os.fspath(offload_folder), INDEX_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"offload index {path!r} is not valid JSON: {err}") from None
    if not isinstance(index, dict):
        raise ValueError(f"offload index {path!r} must hold a JSON object")
    for name, info in index.items():
        if not (isinstance(info, dict) and info.get("safetensors_file")):
            check_weight_name(name, source=f"offload index {path!r}")
    return index


def offload_state_dict(save_dir: PathLike, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Offload every tensor of ``state_dict`` into ``save_dir`` (``.dat`` files + index).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> offload_state_dict(folder, {"a": torch.ones(2), "b": torch.zeros(3)})
        >>> sorted(os.listdir(folder))
        ['a.dat', 'b.dat', 'index.json']
    """
    os.makedirs(save_dir, exist_ok=True)
    index: dict[str, dict[str, Any]] = {}
    for name, tensor in progress_bar(state_dict.items(), desc="Offloading weights to disk", total=len(state_dict), unit="tensor"):  # fmt: skip
        offload_weight(tensor, name, save_dir, index=index)
    save_offload_index(index, save_dir)


def load_offloaded_weights(
    model: nn.Module, index: Mapping[str, Mapping[str, Any]] | None, offload_folder: PathLike
) -> None:
    """Load the weights named by ``index`` from ``offload_folder`` into ``model`` (on CPU).

    Example:
        >>> import tempfile
        >>> folder, model = tempfile.mkdtemp(), nn.Linear(2, 2)
        >>> offload_state_dict(folder, {"bias": torch.zeros(2)})
        >>> load_offloaded_weights(model, read_offload_index(folder), folder)
        >>> model.bias
        Parameter containing:
        tensor([0., 0.], requires_grad=True)
    """
    from accel.big_model.tensors import set_module_tensor_to_device

    if not index:
        return
    loader = OffloadedWeightsLoader(save_folder=offload_folder, index=dict(index))
    for name in index:
        if "SCB" in name:
            continue
        set_module_tensor_to_device(model, name, "cpu", value=loader[name])


class PrefixedDataset(Mapping):
    """A view of ``dataset`` restricted to the keys starting with ``prefix`` (prefix removed).

    Example:
        >>> view = PrefixedDataset({"a.w": 1, "a.b": 2, "c.w": 3}, "a.")
        >>> view["w"], sorted(view)
        (1, ['b', 'w'])
    """

    def __init__(self, dataset: Mapping, prefix: str) -> None:
        self.dataset = dataset
        self.prefix = prefix

    def __getitem__(self, key: str) -> Any:
        return self.dataset[f"{self.prefix}{key}"]

    def __contains__(self, key: object) -> bool:
        return f"{self.prefix}{key}" in self.dataset

    def __iter__(self) -> Iterator[str]:
        cut = len(self.prefix)
        return iter([key[cut:] for key in self.dataset if key.startswith(self.prefix)])

    def __len__(self) -> int:
        return sum(1 for key in self.dataset if key.startswith(self.prefix))


# safetensors' dtype codes; the fp8 ones are None on a torch without fp8.
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
    "F8_E5M2": getattr(torch, "float8_e5m2", None),
}
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14


class _MappedSafetensors:
    """A safetensors file whose tensors are each served by a private mapping of their own bytes.

    ``safe_open`` maps the whole file once and keeps it mapped while the handle lives, so every
    weight ever read stays in the process's resident set; here each tensor owns a mapping of
    just its bytes (copy-on-write, like safetensors'), unmapped as soon as the tensor is freed,
    and pre-faulted in one call (``MADV_POPULATE_READ``) where the kernel supports it.
    """

    _populate = sys.platform.startswith("linux")

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = int.from_bytes(os.pread(fd, 8, 0), "little")
            header = json.loads(os.pread(fd, size, 8))
        except BaseException:
            os.close(fd)
            raise
        header.pop("__metadata__", None)
        self.fd: int | None = fd
        self.data_start = 8 + size
        self.entries: dict[str, Any] = header

    def get(self, name: str) -> torch.Tensor | None:
        """The tensor ``name`` (``None`` when this reader cannot serve it: use safetensors)."""
        info = self.entries.get(name)
        if info is None or self.fd is None:
            return None
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            return None
        begin, end = (int(v) for v in info["data_offsets"])
        shape = [int(v) for v in info["shape"]]
        nbytes, itemsize = end - begin, torch.empty((), dtype=dtype).element_size()
        if nbytes == 0 or nbytes % itemsize:
            return None if nbytes else torch.empty(shape, dtype=dtype)
        start = self.data_start + begin
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        view = mmap.mmap(self.fd, nbytes + start - aligned, access=mmap.ACCESS_COPY, offset=aligned)
        if _MappedSafetensors._populate:
            try:
                view.madvise(_MADV_POPULATE_READ)
            except (OSError, ValueError):
                _MappedSafetensors._populate = False
        tensor = torch.frombuffer(
            view, dtype=dtype, count=nbytes // itemsize, offset=start - aligned
        )
        return tensor.view(shape)

    def close(self) -> None:
        """Close the file (tensors already served stay valid)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class OffloadedWeightsLoader(Mapping):
    """A read-only map from weight name to tensor that loads each weight when asked.

    Sources, in priority order: ``state_dict`` (tensors held in memory), then ``index``
    entries (default: ``<save_folder>/index.json``). An entry with a ``safetensors_file`` is
    read from that file in place (no copy is ever made on disk; the file stays memory-mapped
    and open between reads); any other entry is the ``<name>.dat`` file in ``save_folder``.
    ``device`` is where safetensors entries are materialised (default CPU); an entry's
    ``dtype`` converts the tensor after reading.

    Example:
        >>> loader = OffloadedWeightsLoader(state_dict={"w": torch.ones(1)})
        >>> loader["w"], len(loader)
        (tensor([1.]), 1)
    """

    def __init__(
        self,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        save_folder: PathLike | None = None,
        index: Mapping[str, Mapping[str, Any]] | None = None,
        device: int | str | torch.device | None = None,
    ) -> None:
        if state_dict is None and save_folder is None and index is None:
            raise ValueError(
                "OffloadedWeightsLoader needs a state_dict, a save_folder or an index of "
                "offloaded weights"
            )
        self.state_dict = {} if state_dict is None else state_dict
        self.save_folder = None if save_folder is None else os.fspath(save_folder)
        if index is None and self.save_folder is not None:
            index = read_offload_index(self.save_folder)
        self.index = {} if index is None else index
        self.all_keys = list(self.state_dict)
        seen = set(self.all_keys)
        self.all_keys.extend(key for key in self.index if key not in seen)
        self.device = device
        self._handles: dict[tuple[str, str], Any] = {}
        self._mapped: dict[str, _MappedSafetensors | None] = {}
        self._lock = threading.Lock()

    def _mapped_file(self, path: str) -> _MappedSafetensors | None:
        with self._lock:
            if path not in self._mapped:
                try:
                    self._mapped[path] = _MappedSafetensors(path)
                except (OSError, ValueError):
                    self._mapped[path] = None  # safe_open reports what is wrong with it
            return self._mapped[path]

    def _handle(self, path: str, device: str) -> Any:
        from safetensors import safe_open

        key = (path, device)
        with self._lock:
            handle = self._handles.get(key)
            if handle is None:
                try:
                    handle = safe_open(path, framework="pt", device=device)
                except Exception as err:
                    raise ValueError(
                        f"cannot read offloaded weights from safetensors file {path!r}: {err}"
                    ) from None
                self._handles[key] = handle
        return handle

    def _from_safetensors(self, key: str, info: Mapping[str, Any]) -> torch.Tensor:
        path = os.fspath(info["safetensors_file"])
        name = info.get("weight_name", key)
        device = "cpu" if self.device is None else str(torch.device(self.device))
        tensor = None
        if sys.byteorder == "little":
            mapped = self._mapped_file(path)
            tensor = None if mapped is None else mapped.get(name)
        if tensor is None:
            try:
                tensor = self._handle(path, device).get_tensor(name)
            except (TypeError, RuntimeError):
                tensor = self._handle(path, "cpu").get_tensor(name)
        if "dtype" in info:
            tensor = tensor.to(_dtype_from_name(str(info["dtype"])))
        if tensor.device != torch.device(device):
            tensor = tensor.to(device)
        return tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self.state_dict:
            return self.state_dict[key]
        info = self.index[key]
        if info.get("safetensors_file") is not None:
            return self._from_safetensors(key, info)
        if self.save_folder is None:
            raise KeyError(f"{key!r} is offloaded to a .dat file but the loader has no save_folder")
        check_weight_name(key)
        return load_offloaded_weight(os.path.join(self.save_folder, f"{key}.dat"), info)

    def __contains__(self, key: object) -> bool:
        return key in self.state_dict or key in self.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.all_keys)

    def __len__(self) -> int:
        return len(self.all_keys)

    def close(self) -> None:
        """Drop the open safetensors handles (they are reopened on the next read).

        Example:
            >>> OffloadedWeightsLoader(state_dict={}).close()
        """
        with self._lock:
            self._handles.clear()
            mapped, self._mapped = self._mapped, {}
        for reader in mapped.values():
            if reader is not None:
                reader.close()


def extract_submodules_state_dict(
    state_dict: Mapping[str, torch.Tensor], submodule_names: list[str]
) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` that belong to one of ``submodule_names``.

    ``"h.1"`` takes ``h.1`` and ``h.1.*`` but not ``h.10.*``; ``""`` takes everything.

    Example:
        >>> sorted(extract_submodules_state_dict({"h.1.w": 1, "h.10.w": 2}, ["h.1"]))
        ['h.1.w']
    """
    result: dict[str, torch.Tensor] = {}
    for module_name in submodule_names:
        for key, value in state_dict.items():
            if module_name == "" or key == module_name or key.startswith(module_name + "."):
                result[key] = value
    return result
