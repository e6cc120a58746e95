"""accel.core.checkpoint.reader: parallel reads of safetensors and torch.save files give the
same tensors as safetensors / torch.load, straight into the model where they can."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from accel.core import Accelerator
from accel.core.checkpoint import UnsafeCheckpointError, safe_load
from accel.core.checkpoint.reader import (
    CorruptCheckpointError,
    read_into,
    read_safetensors,
    read_torch_file,
)


def _mixed() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(7).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "i64": torch.arange(11),
        "u8": torch.randint(0, 255, (9,), dtype=torch.uint8),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        # Bigger than one read piece (16 MiB), so it is read in parts by several threads.
        "big": torch.randn(5 << 20),
    }


def test_read_safetensors_matches_safetensors(tmp_path):
    path = str(tmp_path / "m.safetensors")
    save_file(_mixed(), path, metadata={"format": "pt", "k": "v"})
    tensors, metadata, placed = read_safetensors(path)
    expected = load_file(path)
    assert tensors.keys() == expected.keys() and placed == set()
    for name, value in expected.items():
        assert tensors[name].dtype == value.dtype and torch.equal(tensors[name], value), name
    assert metadata == {"format": "pt", "k": "v"}


def test_read_safetensors_fills_matching_targets_in_place(tmp_path):
    path = str(tmp_path / "m.safetensors")
    saved = _mixed()
    save_file(saved, path)
    target = {
        "f32": torch.zeros(3, 5),  # taken as is
        "big": torch.zeros(5 << 20),
        "f16": torch.zeros(7),  # other dtype: read apart
        "i64": torch.zeros(22, dtype=torch.int64)[::2],  # not contiguous: read apart
        "u8": torch.zeros(3, 3, dtype=torch.uint8),  # other shape: read apart
    }
    before = {k: v.data_ptr() for k, v in target.items()}
    tensors, _, placed = read_safetensors(path, into=target)
    assert placed == {"f32", "big"}
    for name in placed:
        assert target[name].data_ptr() == before[name] and torch.equal(target[name], saved[name])
        assert tensors[name].data_ptr() == before[name]
    assert not target["f16"].any() and torch.equal(tensors["f16"], saved["f16"])
    assert not target["i64"].any() and torch.equal(tensors["i64"], saved["i64"])


def test_names_tied_in_the_target_are_filled_once(tmp_path):
    path = str(tmp_path / "m.safetensors")
    save_file({"a": torch.ones(4), "b": torch.full((4,), 2.0)}, path)
    shared = torch.zeros(4)
    tensors, _, placed = read_safetensors(path, into={"a": shared, "b": shared})
    assert len(placed) == 1
    other = ({"a", "b"} - placed).pop()
    assert tensors[other].data_ptr() != shared.data_ptr()
    assert torch.equal(tensors["a"], torch.ones(4)) and torch.equal(
        tensors["b"], torch.full((4,), 2.0)
    )


def test_truncated_safetensors_is_refused_before_anything_is_written(tmp_path):
    path = str(tmp_path / "m.safetensors")
    save_file({"w": torch.ones(1000)}, path)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 10)
    target = {"w": torch.zeros(1000)}
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        read_safetensors(path, into=target)
    assert not target["w"].any()


@pytest.mark.parametrize(
    "header, match",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (
            json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode(),
            "span 8",
        ),
        (
            json.dumps({"w": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}).encode(),
            "not a tensor",
        ),
    ],
)
def test_malformed_safetensors_headers_are_refused(tmp_path, header, match):
    path = str(tmp_path / "bad.safetensors")
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header + bytes(64))
    with pytest.raises(CorruptCheckpointError, match=match):
        read_safetensors(path)


def test_absurd_header_length_is_refused(tmp_path):
    path = str(tmp_path / "bad.safetensors")
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", 1 << 60))
    with pytest.raises(CorruptCheckpointError, match="header claims"):
        read_safetensors(path)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return type(a) is type(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_read_torch_file_matches_torch_load(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 64)).sum().backward()
    optimizer.step()
    path = str(tmp_path / "optimizer.bin")
    torch.save(optimizer.state_dict(), path)
    loaded = read_torch_file(path, safe_load)
    assert _same(loaded, torch.load(path, weights_only=True))
    fresh = torch.optim.AdamW(model.parameters())
    fresh.load_state_dict(loaded)
    assert _same(fresh.state_dict(), optimizer.state_dict())


def test_read_torch_file_keeps_views_parameters_and_big_tensors(tmp_path):
    base = torch.arange(10.0)
    obj = {
        "base": base,
        "view": base[2:5],
        "param": torch.nn.Parameter(torch.ones(3)),
        "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False),
        "big": torch.randn(5 << 20),
        "nested": [(torch.tensor(1), "text", 3.5)],
        "empty": torch.zeros(0, 3),
    }
    path = str(tmp_path / "obj.pt")
    torch.save(obj, path)
    loaded = read_torch_file(path)
    assert _same(loaded, torch.load(path, weights_only=True))
    assert (
        loaded["view"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()
    )
    loaded["base"][3] = -1.0
    assert loaded["view"][1] == -1.0
    assert loaded["param"].requires_grad and not loaded["frozen"].requires_grad


def test_legacy_format_is_loaded_through_torch_load(tmp_path):
    path = str(tmp_path / "legacy.pt")
    torch.save({"w": torch.arange(5)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_torch_file(path, safe_load)["w"], torch.arange(5))


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_code_in_a_torch_file_is_refused(tmp_path):
    path = str(tmp_path / "optimizer.bin")
    torch.save({"state": {}, "evil": _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"optimizer\.bin"):
        read_torch_file(path, safe_load)


def test_read_into_refuses_ranges_past_the_end(tmp_path):
    path = str(tmp_path / "blob")
    with open(path, "wb") as handle:
        handle.write(bytes(100))
    with pytest.raises(CorruptCheckpointError, match="file has 100 bytes"):
        read_into(path, [(90, torch.empty(20, dtype=torch.uint8))])
    with pytest.raises(TypeError, match="contiguous CPU uint8"):
        read_into(path, [(0, torch.empty(4))])


class _Halved(torch.nn.Module):
    """Stores its weights halved on disk (a load hook doubles them): loading must not bypass
    the hook by reading bytes straight into the parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 4)
        self._register_load_state_dict_pre_hook(self._double)

    @staticmethod
    def _double(state_dict, prefix, *args):
        for key in list(state_dict):
            if key.startswith(prefix):
                state_dict[key] = state_dict[key] * 2


def test_load_state_with_a_load_hook_goes_through_load_state_dict(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(_Halved())
    weights = {"layer.weight": torch.randn(4, 4), "layer.bias": torch.randn(4)}
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    accelerator.load_state(str(folder))
    assert torch.equal(model.layer.weight, weights["layer.weight"] * 2)
    assert torch.equal(model.layer.bias, weights["layer.bias"] * 2)


def test_load_state_reads_weights_into_the_model(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(8, 8))
    accelerator.save_state(str(tmp_path / "ckpt"))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    pointers = [p.data_ptr() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    accelerator.load_state(str(tmp_path / "ckpt"))
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
