"""A real client of ``accel.big_model``: a small transformers causal LM, built from a config in
code (no hub), saved sharded by transformers, then loaded with accel (CPU, disk, ``"auto"``)
and run through ``generate``; and accel's sharded checkpoints loaded by transformers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")

from accel.big_model import (  # noqa: E402
    init_empty_weights,
    load_checkpoint_and_dispatch,
    save_sharded_safetensors,
)

pytestmark = pytest.mark.slow

NO_SPLIT = ["LlamaDecoderLayer"]
# Parts on CPU, parts on disk (tied case: lm_head on disk, its tied embedding on CPU).
SPLIT_MAP = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "cpu",
    "model.layers.3": "disk",
    "model.norm": "disk",
    "lm_head": "disk",
}


def _config(tie: bool) -> Any:
    """The tiny Llama config the tests use (about 0.8 MB of float32 weights)."""
    return transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )


def _empty_model(config: Any) -> torch.nn.Module:
    """``AutoModelForCausalLM.from_config`` under accel's ``init_empty_weights``."""
    with init_empty_weights():
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A reference model saved by transformers as sharded safetensors + index, its inputs and
    its greedy generation."""
    tie = request.param
    torch.manual_seed(0)
    config = _config(tie)
    reference = transformers.LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp(f"llama-tie{int(tie)}")
    reference.save_pretrained(folder, max_shard_size="200KB")
    shards = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    input_ids = torch.randint(
        0, config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = reference.generate(input_ids, max_new_tokens=10, do_sample=False)
        logits = reference(input_ids).logits
    return {
        "tie": tie,
        "config": config,
        "folder": folder,
        "reference": reference,
        "input_ids": input_ids,
        "expected": expected,
        "logits": logits,
    }


@pytest.mark.parametrize("placement", ["cpu+disk", "auto", "all-disk"])
def test_dispatched_generate_matches_plain_model(
    saved: dict, placement: str, tmp_path: Path
) -> None:
    """Greedy ``generate`` of the dispatched model gives the plain model's tokens and logits,
    with weights on CPU and disk, planned by ``"auto"`` with a small CPU budget, or all on disk."""
    model = _empty_model(saved["config"])
    extra: dict[str, Any] = {}
    if placement == "cpu+disk":
        device_map: Any = dict(SPLIT_MAP)
    elif placement == "auto":
        device_map, extra["max_memory"] = "auto", {"cpu": "500KB"}
    else:
        device_map = {"": "disk"}
    model = load_checkpoint_and_dispatch(
        model,
        saved["folder"],
        device_map=device_map,
        no_split_module_classes=NO_SPLIT,
        offload_folder=tmp_path / "offload",
        **extra,
    )
    placed = set(model.hf_device_map.values())
    assert placed == ({"disk"} if placement == "all-disk" else {"cpu", "disk"}), model.hf_device_map
    disk_module = next(name for name, device in model.hf_device_map.items() if device == "disk")
    assert all(p.device.type == "meta" for p in model.get_submodule(disk_module).parameters()), (
        "disk-mapped weights should stay on meta between forwards"
    )

    with torch.no_grad():
        tokens = model.generate(saved["input_ids"], max_new_tokens=10, do_sample=False)
        logits = model(saved["input_ids"]).logits
    assert torch.equal(tokens, saved["expected"])
    assert torch.equal(logits, saved["logits"])
    if saved["tie"]:
        # generate again: the tie still serves lm_head after the hooks dropped it to meta
        with torch.no_grad():
            again = model.generate(saved["input_ids"], max_new_tokens=10, do_sample=False)
        assert torch.equal(again, saved["expected"])


def test_save_sharded_safetensors_loads_with_from_pretrained(saved: dict, tmp_path: Path) -> None:
    """``save_sharded_safetensors`` output (+ config.json) loads with transformers'
    ``from_pretrained`` with no missing or unexpected keys and gives identical logits."""
    folder = tmp_path / "accel-saved"
    paths = save_sharded_safetensors(
        saved["reference"].state_dict(), folder, max_shard_size="200KB"
    )
    assert any(p.endswith("model.safetensors.index.json") for p in paths)
    saved["config"].save_pretrained(folder)
    loaded, info = transformers.AutoModelForCausalLM.from_pretrained(
        folder, output_loading_info=True
    )
    loaded.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    with torch.no_grad():
        logits = loaded(saved["input_ids"]).logits
    assert torch.equal(logits, saved["logits"])
    if saved["tie"]:
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
