"""``Accelerator.save_model`` / ``Accelerator.save`` and ``accel.core.save``: layout, atomicity,
and that the big-model loader and transformers read what was written."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import accel.core
from accel.big_model import load_checkpoint_in_model
from accel.core import (
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    Accelerator,
    ProjectConfiguration,
)
from accel.state import PartialState


@pytest.fixture
def transformers():
    """transformers: only the tests that build or load its models need it."""
    return pytest.importorskip("transformers")


def _tiny_llama(transformers, tie: bool = True):
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    return config, model


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


IDS = torch.arange(12).reshape(2, 6)


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("tie", [True, False])
def test_save_model_sharded_loads_in_transformers_and_big_model(tmp_path, safe, tie, transformers):
    config, model = _tiny_llama(transformers, tie)
    accelerator = Accelerator(cpu=True)
    prepared = accelerator.prepare(model)
    out = tmp_path / "model"
    accelerator.save_model(prepared, out, max_shard_size="20KB", safe_serialization=safe)

    files = sorted(os.listdir(out))
    index_name = SAFE_WEIGHTS_INDEX_NAME if safe else WEIGHTS_INDEX_NAME
    ext = ".safetensors" if safe else ".bin"
    shards = [f for f in files if f.endswith(ext)]
    assert index_name in files and len(shards) > 1, files
    assert all(f.startswith("model-" if safe else "pytorch_model-") for f in shards)
    assert not [f for f in files if f.startswith(".")], "temporary files left behind"
    index = json.loads((out / index_name).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] > 0
    if tie and safe:
        # the tied head is stored once
        assert "lm_head.weight" not in index["weight_map"]

    expected = _logits(model, IDS)
    config.save_pretrained(out)
    loaded = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    torch.testing.assert_close(_logits(loaded, IDS), expected, rtol=0, atol=0)

    _, fresh = _tiny_llama(transformers, tie)
    torch.manual_seed(1)
    for p in fresh.parameters():
        nn.init.normal_(p)
    load_checkpoint_in_model(fresh, str(out))
    torch.testing.assert_close(_logits(fresh, IDS), expected, rtol=0, atol=0)


def test_save_model_single_file_and_stale_shards_removed(tmp_path, transformers):
    _, model = _tiny_llama(transformers)
    accelerator = Accelerator(cpu=True)
    out = tmp_path / "m"
    accelerator.save_model(model, out, max_shard_size="20KB")
    assert len([f for f in os.listdir(out) if f.endswith(".safetensors")]) > 1
    (out / "README.md").write_text("keep me")
    accelerator.save_model(model, out)  # default 10GB: one file
    assert sorted(os.listdir(out)) == ["README.md", SAFE_WEIGHTS_NAME]

    accelerator.save_model(model, out, safe_serialization=False)
    assert WEIGHTS_NAME in os.listdir(out)
    state = torch.load(out / WEIGHTS_NAME, weights_only=True)
    assert torch.equal(state["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    assert state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()


def test_save_model_bad_targets(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = nn.Linear(2, 2)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        accelerator.save_model(model, target)
    with torch.device("meta"):
        meta_model = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="meta device"):
        accelerator.save_model(meta_model, tmp_path / "meta")
    assert not (tmp_path / "meta").exists()


def test_save_model_is_atomic_on_failure(tmp_path, monkeypatch):
    import safetensors.torch

    accelerator = Accelerator(cpu=True)
    model = nn.Linear(4, 4)
    out = tmp_path / "m"
    accelerator.save_model(model, out)
    before = (out / SAFE_WEIGHTS_NAME).read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    with torch.no_grad():
        model.weight.add_(1)
    with pytest.raises(OSError, match="disk full"):
        accelerator.save_model(model, out)
    assert os.listdir(out) == [SAFE_WEIGHTS_NAME]
    assert (out / SAFE_WEIGHTS_NAME).read_bytes() == before
    assert os.listdir(tmp_path) == ["m"]


def test_only_main_process_writes(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True)
    monkeypatch.setattr(PartialState, "is_main_process", property(lambda self: False))
    accelerator.save_model(nn.Linear(2, 2), tmp_path / "m")
    accelerator.save({"a": 1}, tmp_path / "a.pt")
    assert os.listdir(tmp_path) == []


def test_save_on_each_node_uses_local_main(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True, project_config=ProjectConfiguration(save_on_each_node=True))
    monkeypatch.setattr(PartialState, "is_main_process", property(lambda self: False))
    accelerator.save({"a": 1}, tmp_path / "a.pt")
    assert torch.load(tmp_path / "a.pt") == {"a": 1}


def test_accelerator_save_atomic_and_safetensors(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    accelerator = Accelerator(cpu=True)
    path = tmp_path / "obj.pt"
    accelerator.save({"step": 3, "w": torch.ones(2)}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.ones(2))

    def fail(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        accelerator.save({"step": 4}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 3
    assert os.listdir(tmp_path) == ["obj.pt"]

    w = torch.randn(3, 3)
    safe = tmp_path / "w.safetensors"
    accelerator.save({"a": w, "b": w}, safe, safe_serialization=True)
    assert list(load_file(safe)) == ["a"]
    from accel.big_model import load_state_dict

    both = load_state_dict(str(safe))
    assert torch.equal(both["b"], w)
    with pytest.raises(TypeError, match="dict of tensors"):
        accelerator.save([1, 2], tmp_path / "x", safe_serialization=True)


def test_module_level_save_and_file_objects(tmp_path):
    import io

    buffer = io.BytesIO()
    accel.core.save({"x": 1}, buffer)
    buffer.seek(0)
    assert torch.load(buffer) == {"x": 1}
    with pytest.raises(IsADirectoryError):
        accel.core.save({"x": 1}, tmp_path)
