"""dispatch_model, cpu/disk offload and load_checkpoint_and_dispatch: bitwise equal outputs."""

from __future__ import annotations

import gc
import os

import pytest
import torch
from bm_models import empty_tiny, ids, make_tiny

from accel.big_model import (
    cleanup_offload,
    cpu_offload,
    cpu_offload_with_hook,
    disk_offload,
    dispatch_model,
    load_checkpoint_and_dispatch,
)
from accel.big_model.checkpoint import save_sharded_safetensors

MAPS = {
    "cpu": {"": "cpu"},
    "mixed": {
        "embed": "cpu",
        "blocks.0": "cpu",
        "blocks.1": "disk",
        "blocks.2": "cpu",
        "blocks.3": "disk",
        "norm": "disk",
        "head": "cpu",
    },
    "disk_blocks": {"embed": "cpu", "blocks": "disk", "norm": "cpu", "head": "cpu"},
    "all_disk": {"embed": "disk", "blocks": "disk", "norm": "disk", "head": "disk"},
    "root_disk": {"": "disk"},
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = make_tiny()
    folder = tmp_path_factory.mktemp("ckpt") / "c"
    save_sharded_safetensors(model.state_dict(), folder, max_shard_size="2KB")
    with torch.no_grad():
        expected = model(ids())
    return folder, expected


def _run(model, n=2):
    with torch.no_grad():
        outs = [model(ids()) for _ in range(n)]
    assert all(torch.equal(outs[0], o) for o in outs)
    return outs[0]


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("name", list(MAPS))
def test_load_checkpoint_and_dispatch_bitwise(reference, tmp_path, name, prefetch):
    folder, expected = reference
    model = load_checkpoint_and_dispatch(
        empty_tiny(), folder, device_map=MAPS[name], prefetch=prefetch
    )
    assert torch.equal(_run(model, 3), expected)
    assert model.hf_device_map == MAPS[name]
    if "disk" in MAPS[name].values():
        assert model.blocks[3].fc1.weight.device.type == "meta"


def test_disk_modules_are_not_copied(reference, tmp_path):
    folder, expected = reference
    offload = tmp_path / "offload"
    model = load_checkpoint_and_dispatch(
        empty_tiny(), folder, MAPS["mixed"], offload_folder=offload
    )
    assert [f for f in os.listdir(offload) if f.endswith(".dat")] == []
    assert torch.equal(_run(model), expected)


def test_bin_checkpoint_with_disk_uses_temporary_folder(tmp_path):
    source = make_tiny(tie=False)
    torch.save(source.state_dict(), tmp_path / "pytorch_model.bin")
    with torch.no_grad():
        expected = source(ids())
    model = load_checkpoint_and_dispatch(empty_tiny(tie=False), tmp_path, MAPS["all_disk"])
    folders = list(model._accel_temporary_offload_folders)
    assert len(folders) == 1 and any(f.endswith(".dat") for f in os.listdir(folders[0]))
    assert torch.equal(_run(model), expected)
    assert cleanup_offload(model) == folders
    assert not os.path.exists(folders[0])


def test_temporary_folder_removed_when_model_freed():
    model = make_tiny()
    with torch.no_grad():
        expected = model(ids())
    dispatch_model(model, MAPS["disk_blocks"])
    folder = model._accel_temporary_offload_folders[0]
    assert os.path.isdir(folder)
    assert torch.equal(_run(model), expected)
    del model
    gc.collect()
    assert not os.path.exists(folder)


def test_dispatch_model_mixed_from_memory(tmp_path):
    model = make_tiny()
    with torch.no_grad():
        expected = model(ids())
    dispatch_model(model, MAPS["mixed"], offload_dir=tmp_path / "o")
    assert (tmp_path / "o" / "index.json").exists()
    assert torch.equal(_run(model), expected)
    with pytest.raises(RuntimeError, match="offloaded"):
        model.to("cpu")


def test_dispatch_single_device_moves_model():
    model = make_tiny()
    dispatch_model(model, {"": "cpu"})
    assert not hasattr(model, "_hf_hook") and model.hf_device_map == {"": "cpu"}


def test_dispatch_disk_without_weights_is_explained():
    with pytest.raises(ValueError, match="no weights to offload"):
        dispatch_model(empty_tiny(), MAPS["all_disk"])


@pytest.mark.parametrize("prefetch", [True, False])
def test_cpu_offload_bitwise(prefetch):
    model = make_tiny()
    with torch.no_grad():
        expected = model(ids())
    cpu_offload(model, "cpu", prefetch=prefetch)
    assert model.blocks[0].fc1.weight.device.type == "meta"
    assert torch.equal(_run(model, 3), expected)


@pytest.mark.parametrize("prefetch", [True, False])
def test_disk_offload_bitwise(tmp_path, prefetch):
    model = make_tiny()
    with torch.no_grad():
        expected = model(ids())
    disk_offload(model, tmp_path / "o", "cpu", prefetch=prefetch)
    assert (tmp_path / "o" / "blocks.0.fc1.weight.dat").exists()
    assert torch.equal(_run(model, 3), expected)


def test_cpu_offload_with_hook_chain():
    a, b = make_tiny(seed=1), make_tiny(seed=2)
    with torch.no_grad():
        expected = b(a(ids()).argmax(-1))
    a, hook_a = cpu_offload_with_hook(a, "cpu")
    b, hook_b = cpu_offload_with_hook(b, "cpu", prev_module_hook=hook_a)
    with torch.no_grad():
        assert torch.equal(b(a(ids()).argmax(-1)), expected)
    hook_b.offload()


def test_prefetch_env_var_disables(monkeypatch, reference):
    monkeypatch.setenv("ACCEL_OFFLOAD_PREFETCH", "0")
    folder, expected = reference
    model = load_checkpoint_and_dispatch(empty_tiny(), folder, MAPS["all_disk"])
    assert all(h.prefetcher is None for h in _hooks(model))
    assert torch.equal(_run(model), expected)
    monkeypatch.delenv("ACCEL_OFFLOAD_PREFETCH")
    model = load_checkpoint_and_dispatch(empty_tiny(), folder, MAPS["all_disk"])
    assert any(h.prefetcher is not None for h in _hooks(model))


def _hooks(model):
    from accel.big_model import align_device_hooks

    return [h for h in align_device_hooks(model) if h.offload]


@pytest.mark.parametrize("name", ["cpu", "disk_blocks", "mixed"])
def test_same_outputs_as_accelerate(reference, tmp_path, name):
    accelerate = pytest.importorskip("accelerate")
    folder, expected = reference
    ours = load_checkpoint_and_dispatch(empty_tiny(), folder, MAPS[name])
    theirs = accelerate.load_checkpoint_and_dispatch(
        empty_tiny(), str(folder), device_map=MAPS[name], offload_folder=str(tmp_path / "acc")
    )
    with torch.no_grad():
        assert torch.equal(ours(ids()), theirs(ids()))
    assert torch.equal(_run(ours), expected)


def test_accelerate_fails_all_disk_we_do_not(reference, tmp_path):
    accelerate = pytest.importorskip("accelerate")
    folder, expected = reference
    with pytest.raises(Exception):  # noqa: B017 - documents Accelerate's failure
        accelerate.load_checkpoint_and_dispatch(
            empty_tiny(),
            str(folder),
            device_map=MAPS["all_disk"],
            offload_folder=str(tmp_path / "a"),
        )
    model = load_checkpoint_and_dispatch(empty_tiny(), folder, MAPS["all_disk"])
    assert torch.equal(_run(model), expected)


def test_bad_device_is_named_before_any_file_is_read(tmp_path):
    """A typo in the map is reported as such, even when the checkpoint path is a bad file."""
    from accel.big_model import init_empty_weights, load_checkpoint_and_dispatch

    bad_file = tmp_path / "model.safetensors"
    bad_file.write_bytes(b"not a checkpoint at all")
    with init_empty_weights():
        model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"device_map\[''\] = 'gpu7' is not a device; valid:"):
        load_checkpoint_and_dispatch(model, str(tmp_path), device_map={"": "gpu7"})


def test_strict_false_missing_key_is_named_before_dispatch(tmp_path):
    from safetensors.torch import save_file

    from accel.big_model import init_empty_weights, load_checkpoint_and_dispatch

    source = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    weights = source.state_dict()
    del weights["1.bias"]
    save_file(weights, str(tmp_path / "model.safetensors"))
    with init_empty_weights():
        model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    with pytest.raises(
        ValueError, match=r"still on the meta device.*: 1\.bias\. .*set_module_tensor_to_device"
    ):
        load_checkpoint_and_dispatch(model, str(tmp_path), device_map={"": "cpu"}, strict=False)
