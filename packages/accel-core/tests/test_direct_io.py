"""accel.core.checkpoint.direct_io: safetensors and torch.save files written around the page cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from accel.core.checkpoint.direct_io import _CHUNK, DirectWriter, save_safetensors


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "big": torch.randn(_CHUNK // 4 + 1001, generator=generator),  # > one chunk, odd tail
        "bf16": torch.randn(7, 3, generator=generator).to(torch.bfloat16),
        "half": torch.randn(5, generator=generator).half(),
        "int": torch.arange(11, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "bytes": torch.arange(13, dtype=torch.uint8),
    }


def test_safetensors_written_directly_load_like_save_file(tmp_path: Path) -> None:
    tensors = _tensors()
    ours, reference = tmp_path / "ours.safetensors", tmp_path / "ref.safetensors"
    save_safetensors(tensors, ours, metadata={"format": "pt", "note": "x"})
    save_file(tensors, reference, metadata={"format": "pt", "note": "x"})
    assert os.path.getsize(ours) == os.path.getsize(reference)
    loaded = load_file(ours)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    with safe_open(ours, "pt") as handle:
        assert handle.metadata() == {"format": "pt", "note": "x"}


def test_torch_save_through_the_direct_writer_round_trips(tmp_path: Path) -> None:
    state = {"state": {0: {"exp_avg": torch.randn(_CHUNK // 4 + 17)}}, "lr": 0.1, "names": ["a"]}
    path = tmp_path / "optimizer.bin"
    with DirectWriter(path) as out:
        torch.save(state, out)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    assert loaded["lr"] == 0.1 and loaded["names"] == ["a"]
    assert torch.load(path, weights_only=True, mmap=True)["lr"] == 0.1  # a valid zip archive


@pytest.mark.parametrize("platform_has_o_direct", [True, False])
def test_writes_with_and_without_o_direct(
    tmp_path: Path, monkeypatch, platform_has_o_direct
) -> None:
    import accel.core.checkpoint.direct_io as direct_io

    if not platform_has_o_direct:  # as on macOS, where os.O_DIRECT does not exist
        monkeypatch.setattr(direct_io, "_O_DIRECT", 0)
    payload = os.urandom(_CHUNK + 4096 * 3 + 5)  # whole chunk, aligned blocks, short tail
    path = tmp_path / "blob"
    with DirectWriter(path) as writer:
        assert writer.direct is (platform_has_o_direct and bool(direct_io._O_DIRECT))
        for start in range(0, len(payload), 1 << 20):
            writer.write(payload[start : start + (1 << 20)])
        assert writer.tell() == len(payload)
    assert path.read_bytes() == payload


def test_unsupported_dtypes_fall_back_to_safetensors(tmp_path: Path) -> None:
    tensors = {"c": torch.randn(3, dtype=torch.complex64)}
    path = tmp_path / "c.safetensors"
    try:
        save_file(tensors, tmp_path / "probe.safetensors")
    except Exception as error:  # this safetensors cannot store complex numbers at all
        with pytest.raises(type(error)):
            save_safetensors(tensors, path)
        return
    save_safetensors(tensors, path)
    assert torch.equal(load_file(path)["c"], tensors["c"])


def test_checkpoint_files_above_the_threshold_take_the_direct_path(tmp_path: Path) -> None:
    from accel.core.checkpoint.writer import _DIRECT_BYTES, CheckpointFile, write_files

    weights = {"w": torch.randn(_DIRECT_BYTES // 4 + 3), "tied": None}
    weights["tied"] = weights["w"]  # stored once, the alias recorded in the metadata
    optimizer = {"state": {0: {"exp_avg": torch.randn(_DIRECT_BYTES // 4 + 5)}}}
    files = [
        CheckpointFile("model.safetensors", weights, "safetensors"),
        CheckpointFile("optimizer.bin", optimizer),
    ]
    assert all(f.size >= _DIRECT_BYTES for f in files)
    write_files(str(tmp_path), files)
    from accel.big_model import load_state_dict

    loaded = load_state_dict(str(tmp_path / "model.safetensors"))
    assert torch.equal(loaded["w"], weights["w"]) and torch.equal(loaded["tied"], weights["w"])
    exp_avg = torch.load(tmp_path / "optimizer.bin", weights_only=True)["state"][0]["exp_avg"]
    assert torch.equal(exp_avg, optimizer["state"][0]["exp_avg"])
