"""Checkpoint IO: sharded safetensors round trips, indexes, corrupt files, key errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from bm_models import empty_tiny, make_tiny
from safetensors.torch import save_file
from torch import nn

from accel.big_model.checkpoint import (
    SAFE_WEIGHTS_INDEX_NAME,
    CheckpointError,
    load_checkpoint_in_model,
    load_state_dict,
    read_checkpoint_index,
    save_sharded_safetensors,
    shard_checkpoint,
)
from accel.big_model.offload import (
    OffloadedWeightsLoader,
    PrefixedDataset,
    load_offloaded_weights,
    offload_state_dict,
    read_offload_index,
)


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_shard_checkpoint_sizes_and_index():
    sd = {f"w{i}": torch.zeros(10) for i in range(5)}  # 40 bytes each
    shards, index = shard_checkpoint(sd, max_shard_size=100, weights_name="model.safetensors")
    assert list(shards) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert [len(s) for s in shards.values()] == [2, 2, 1]
    assert index["metadata"]["total_size"] == 200
    assert index["weight_map"]["w4"] == "model-00003-of-00003.safetensors"
    single, none = shard_checkpoint(sd, max_shard_size="1GB")
    assert list(single) == ["pytorch_model.bin"] and none is None


def test_shard_checkpoint_keeps_shared_storage_together():
    w = torch.zeros(10)
    _, index = shard_checkpoint({"a": w, "b": torch.ones(10), "c": w}, max_shard_size=40)
    assert index["weight_map"]["c"] == index["weight_map"]["a"]
    assert index["metadata"]["total_size"] == 80


@pytest.mark.parametrize("max_shard_size", ["1KB", "100MB"])
def test_sharded_round_trip(tmp_path, max_shard_size):
    model = make_tiny(tie=False)
    folder = tmp_path / "ckpt"
    paths = save_sharded_safetensors(model.state_dict(), folder, max_shard_size=max_shard_size)
    names = sorted(os.listdir(folder))
    if max_shard_size == "1KB":
        assert SAFE_WEIGHTS_INDEX_NAME in names and len(paths) > 2
    else:
        assert names == ["model.safetensors"]
    loaded = empty_tiny(tie=False)
    load_checkpoint_in_model(loaded, folder, strict=True)
    _assert_same(model, loaded)
    # the index file itself is a valid checkpoint argument too
    if max_shard_size == "1KB":
        other = empty_tiny(tie=False)
        load_checkpoint_in_model(other, folder / SAFE_WEIGHTS_INDEX_NAME, strict=True)
        _assert_same(model, other)


def test_tied_weights_saved_once_and_retied(tmp_path):
    model = make_tiny()
    assert model.head.weight is model.embed.weight
    paths = save_sharded_safetensors(model.state_dict(), tmp_path / "c", max_shard_size="1KB")
    index = read_checkpoint_index(tmp_path / "c" / SAFE_WEIGHTS_INDEX_NAME)
    assert "embed.weight" in index and "head.weight" not in index
    loaded = empty_tiny()
    load_checkpoint_in_model(loaded, tmp_path / "c", strict=True)
    assert loaded.head.weight is loaded.embed.weight
    _assert_same(model, loaded)
    state = {}
    for path in paths:
        if path.endswith(".safetensors"):
            state.update(load_state_dict(path))
    assert state["head.weight"] is state["embed.weight"]


def test_distinct_views_of_one_storage_are_copied(tmp_path):
    base = torch.arange(10.0)
    paths = save_sharded_safetensors(
        {"a": base[:5], "b": base[5:], "t": base.view(2, 5).t()}, tmp_path / "v"
    )
    state = load_state_dict(paths[0])
    assert torch.equal(state["a"], base[:5]) and torch.equal(state["b"], base[5:])
    assert torch.equal(state["t"], base.view(2, 5).t())


def test_resave_replaces_and_removes_stale_shards(tmp_path):
    folder = tmp_path / "c"
    save_sharded_safetensors(make_tiny(tie=False).state_dict(), folder, max_shard_size="1KB")
    (folder / "config.json").write_text("{}")
    model = make_tiny(seed=1, tie=False)
    save_sharded_safetensors(model.state_dict(), folder)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    loaded = empty_tiny(tie=False)
    load_checkpoint_in_model(loaded, folder)
    _assert_same(model, loaded)


def test_bin_checkpoint_and_device_map(tmp_path):
    model = make_tiny(tie=False)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = empty_tiny(tie=False)
    load_checkpoint_in_model(loaded, tmp_path, device_map={"": "cpu"}, strict=True)
    _assert_same(model, loaded)
    state = load_state_dict(str(tmp_path / "pytorch_model.bin"))
    assert torch.equal(state["norm.weight"], model.norm.weight)


def test_load_into_real_model_copies_in_place(tmp_path):
    source = make_tiny(seed=3)
    save_sharded_safetensors(source.state_dict(), tmp_path / "c")
    target = make_tiny(seed=4)
    weight = target.embed.weight
    load_checkpoint_in_model(target, tmp_path / "c")
    assert target.embed.weight is weight and target.head.weight is weight
    _assert_same(source, target)


def test_dtype_and_keep_in_fp32(tmp_path):
    save_sharded_safetensors(make_tiny(tie=False).state_dict(), tmp_path / "c")
    model = empty_tiny(tie=False)
    load_checkpoint_in_model(
        model,
        tmp_path / "c",
        device_map={"": "cpu"},
        dtype="float16",
        keep_in_fp32_modules=["norm"],
    )
    assert model.blocks[0].fc1.weight.dtype == torch.float16
    assert model.norm.weight.dtype == torch.float32


def test_index_outside_folder_is_refused(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    save_file({"w": torch.ones(1)}, str(tmp_path / "outside.safetensors"))
    for bad in ("../outside.safetensors", str(tmp_path / "outside.safetensors")):
        (folder / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps({"weight_map": {"w": bad}}))
        with pytest.raises(CheckpointError, match=r"outside|relative"):
            load_checkpoint_in_model(nn.Linear(1, 1), folder)


def test_index_naming_missing_shard(tmp_path):
    (tmp_path / SAFE_WEIGHTS_INDEX_NAME).write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="do not exist"):
        load_checkpoint_in_model(nn.Linear(1, 1), tmp_path)


@pytest.mark.parametrize("keep", [4, 20, -8])
def test_truncated_safetensors_names_the_file(tmp_path, keep):
    path = save_sharded_safetensors(make_tiny().state_dict(), tmp_path / "c")[0]
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:keep])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint_in_model(empty_tiny(), tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_state_dict(path)


def test_corrupt_bin_names_the_file(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        load_checkpoint_in_model(nn.Linear(1, 1), tmp_path)


def test_bin_that_would_execute_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"w": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint_in_model(nn.Linear(1, 1), tmp_path)


def test_strict_lists_missing_and_unexpected_keys(tmp_path):
    state = make_tiny(tie=False).state_dict()
    state.pop("norm.bias")
    state.pop("blocks.1.fc1.weight")
    state["extra.weight"] = torch.ones(1)
    save_sharded_safetensors(state, tmp_path / "c", max_shard_size="2KB")
    model = empty_tiny(tie=False)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_in_model(model, tmp_path / "c", strict=True)
    message = str(info.value)
    assert "missing keys: blocks.1.fc1.weight, norm.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert model.embed.weight.device.type == "meta"  # nothing loaded
    load_checkpoint_in_model(model, tmp_path / "c")  # non-strict loads what fits
    assert model.embed.weight.device.type == "cpu"


def test_mis_shaped_keys_always_raise(tmp_path):
    state = make_tiny(tie=False).state_dict()
    state["norm.weight"] = torch.ones(3)
    save_sharded_safetensors(state, tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"norm.weight: checkpoint \[3\] vs model \[16\]"):
        load_checkpoint_in_model(empty_tiny(tie=False), tmp_path / "c")


def test_disk_map_reads_safetensors_in_place(tmp_path):
    model = make_tiny()
    save_sharded_safetensors(model.state_dict(), tmp_path / "c", max_shard_size="1KB")
    loaded = empty_tiny()
    offload = tmp_path / "offload"
    device_map = {"embed": "cpu", "blocks": "disk", "norm": "cpu", "head": "cpu"}
    load_checkpoint_in_model(loaded, tmp_path / "c", device_map=device_map, offload_folder=offload)
    assert os.listdir(offload) == ["index.json"]  # no .dat copies
    index = read_offload_index(offload)
    assert index["blocks.0.fc1.weight"]["safetensors_file"].startswith(str(tmp_path / "c"))
    assert loaded.blocks[0].fc1.weight.device.type == "meta"
    weights = OffloadedWeightsLoader(save_folder=offload)
    assert torch.equal(weights["blocks.2.fc2.bias"], model.blocks[2].fc2.bias)


def test_disk_map_with_bin_checkpoint_copies_to_dat(tmp_path):
    model = make_tiny(tie=False)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = empty_tiny(tie=False)
    with pytest.raises(ValueError, match="offload_folder"):
        load_checkpoint_in_model(loaded, tmp_path, device_map={"": "disk"})
    load_checkpoint_in_model(
        loaded, tmp_path, device_map={"": "disk"}, offload_folder=tmp_path / "o"
    )
    assert "blocks.0.fc1.weight.dat" in os.listdir(tmp_path / "o")
    load_offloaded_weights(loaded, read_offload_index(tmp_path / "o"), tmp_path / "o")
    _assert_same(model, loaded)


def test_offload_state_dict_round_trip_all_dtypes(tmp_path):
    state = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(5).to(torch.bfloat16),
        "f16": torch.randn(2, 2).half(),
        "i64": torch.arange(7),
        "b": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }
    offload_state_dict(tmp_path, state)
    loader = OffloadedWeightsLoader(save_folder=tmp_path)
    assert sorted(loader) == sorted(state)
    for key, value in state.items():
        got = loader[key]
        assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value)


def test_offload_folder_readable_by_accelerate(tmp_path):
    accelerate_offload = pytest.importorskip("accelerate.utils.offload")
    state = {"w": torch.randn(3, 4), "h": torch.randn(2).to(torch.bfloat16)}
    offload_state_dict(tmp_path, state)
    theirs = accelerate_offload.OffloadedWeightsLoader(save_folder=str(tmp_path))
    assert torch.equal(theirs["w"], state["w"]) and torch.equal(theirs["h"], state["h"])
    other = tmp_path / "theirs"
    accelerate_offload.offload_state_dict(str(other), state)
    ours = OffloadedWeightsLoader(save_folder=other)
    assert torch.equal(ours["w"], state["w"]) and torch.equal(ours["h"], state["h"])


def test_offload_index_with_path_like_name_is_refused(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"../x": {"dtype": "float32", "shape": [1]}}))
    with pytest.raises(ValueError, match="outside the offload folder"):
        OffloadedWeightsLoader(save_folder=tmp_path)


def test_truncated_dat_file_is_reported(tmp_path):
    offload_state_dict(tmp_path, {"w": torch.ones(100)})
    with open(tmp_path / "w.dat", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(ValueError, match=r"w\.dat.*truncated"):
        OffloadedWeightsLoader(save_folder=tmp_path)["w"]


def test_prefixed_dataset():
    view = PrefixedDataset({"a.x": 1, "a.y": 2, "ab.z": 3}, "a.")
    assert sorted(view) == ["x", "y"] and len(view) == 2 and "x" in view and "z" not in view


def test_accelerate_reads_our_shards(tmp_path):
    accelerate_modeling = pytest.importorskip("accelerate.utils.modeling")
    model = make_tiny(tie=False)
    save_sharded_safetensors(model.state_dict(), tmp_path / "c", max_shard_size="1KB")
    theirs = empty_tiny(tie=False)
    accelerate_modeling.load_checkpoint_in_model(
        theirs, str(tmp_path / "c"), device_map={"": "cpu"}
    )
    _assert_same(model, theirs)
