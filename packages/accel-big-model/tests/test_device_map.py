"""Device maps, compared with Hugging Face Accelerate on the same meta-device models."""

from __future__ import annotations

import logging
import random

import pytest
import torch
from torch import nn

from accel.big_model import (
    check_device_map,
    clean_device_map,
    format_device_map,
    get_balanced_memory,
    infer_auto_device_map,
    resolve_device_map,
)
from accel.big_model.init import init_empty_weights
from accel.big_model.sizes import compute_module_sizes, get_max_memory


@pytest.fixture
def accelerate_modeling():
    """Accelerate's modeling helpers: only the side-by-side comparisons need the reference."""
    return pytest.importorskip("accelerate.utils.modeling")


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.attn = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.Linear(2 * width, width))
        self.norm = nn.LayerNorm(width)


class TinyLM(nn.Module):
    """Embedding, blocks, a head tied to the embedding, a buffer at top level."""

    def __init__(self, vocab: int = 64, width: int = 16, depth: int = 4, tie: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.final = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.register_buffer("positions", torch.arange(8))
        if tie:
            self.head.weight = self.embed.weight


def make(tie: bool = True, **kw) -> nn.Module:
    with init_empty_weights():
        return TinyLM(tie=tie, **kw)


def sizes(model: nn.Module) -> dict[str, float]:
    return dict(compute_module_sizes(model))


def budgets(model: nn.Module, fractions: dict) -> dict:
    total = sizes(model)[""]
    return {k: int(total * v) for k, v in fractions.items()}


def offloads(device_map: dict, max_memory: dict) -> bool:
    offload = ("cpu", "disk") if any(isinstance(k, int) for k in max_memory) else ("disk",)
    return any(v in offload for v in device_map.values())


def assert_same_or_unreserved(ours: dict, theirs: dict, max_memory: dict) -> None:
    """Same map as Accelerate, except where we deliberately differ (Accelerate #3041): when the
    model fits without the room Accelerate keeps free for streaming offloaded layers, we use
    that room and offload nothing."""
    if dict(ours) != dict(theirs):
        assert offloads(theirs, max_memory) and not offloads(ours, max_memory), (ours, theirs)


BUDGETS = [
    {0: 0.3, 1: 0.3, "cpu": 0.3},
    {0: 0.5, 1: 0.6, "cpu": 2.0},
    {0: 0.1, "cpu": 0.4},
    {"cpu": 0.5},
    {0: 2.0, "cpu": 1.0},
    {0: 0.05, 1: 0.05, 2: 0.05, "cpu": 0.2},
]


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("no_split", [None, ["Block"]])
@pytest.mark.parametrize("fractions", BUDGETS)
def test_infer_auto_device_map_matches_accelerate(tie, no_split, fractions, accelerate_modeling):
    model = make(tie=tie)
    max_memory = budgets(model, fractions)
    ours = infer_auto_device_map(model, dict(max_memory), no_split_module_classes=no_split)
    theirs = accelerate_modeling.infer_auto_device_map(
        model, dict(max_memory), no_split_module_classes=no_split
    )
    assert_same_or_unreserved(ours, theirs, max_memory)
    check_device_map(model, ours)


def test_random_models_match_accelerate(accelerate_modeling):
    rng = random.Random(0)
    for _ in range(40):
        width, depth = rng.choice([8, 16, 32]), rng.randint(1, 6)
        model = make(tie=rng.random() < 0.5, width=width, depth=depth, vocab=rng.choice([16, 64]))
        total = sizes(model)[""]
        n_gpu = rng.randint(0, 3)
        max_memory = {i: int(total * rng.uniform(0.05, 0.8)) for i in range(n_gpu)}
        max_memory["cpu"] = int(total * rng.uniform(0.1, 1.5))
        no_split = rng.choice([None, ["Block"], ["Block", "Sequential"]])
        ours = infer_auto_device_map(model, dict(max_memory), no_split_module_classes=no_split)
        theirs = accelerate_modeling.infer_auto_device_map(
            model, dict(max_memory), no_split_module_classes=no_split
        )
        assert_same_or_unreserved(ours, theirs, max_memory)


def test_model_that_fits_without_reserve_is_not_offloaded(accelerate_modeling):
    with init_empty_weights():
        model = nn.Sequential(*[nn.Linear(100, 100) for _ in range(4)])
    layer = sizes(model)["0"]
    max_memory = {0: 2 * layer, 1: 2 * layer, "cpu": 10 * layer}
    theirs = accelerate_modeling.infer_auto_device_map(model, dict(max_memory))
    assert "cpu" in theirs.values()  # Accelerate keeps a layer's room free on GPU 0
    ours = infer_auto_device_map(model, dict(max_memory))
    assert dict(ours) == {"0": 0, "1": 0, "2": 1, "3": 1}


def test_tied_parameters_placed_together(accelerate_modeling):
    model = make(tie=True)
    s = sizes(model)
    # Room for the embedding (and its tied head) on GPU 0, not for everything.
    max_memory = {0: int(s["embed"] + s["blocks.0"] + s["blocks"] * 0.3 * 2), "cpu": 10**9}
    device_map = infer_auto_device_map(model, max_memory, no_split_module_classes=["Block"])
    assert device_map["embed"] == device_map["head"] == 0
    assert dict(device_map) == accelerate_modeling.infer_auto_device_map(
        model, max_memory, no_split_module_classes=["Block"]
    )


def test_no_split_module_classes_keeps_blocks_whole():
    model = make(tie=False)
    max_memory = budgets(model, {0: 0.35, 1: 0.35, "cpu": 1.0})
    device_map = infer_auto_device_map(model, max_memory, no_split_module_classes=["Block"])
    assert all(k.count(".") <= 1 for k in device_map), device_map
    split = infer_auto_device_map(model, max_memory)
    assert any(k.count(".") >= 2 for k in split), split


def test_dtype_halves_sizes_and_special_dtypes(accelerate_modeling):
    model = make(tie=False)
    half = compute_module_sizes(model, dtype=torch.float16)
    full = compute_module_sizes(model)
    assert half["blocks.0"] * 2 == full["blocks.0"]
    assert half["positions"] == full["positions"]  # integer buffers are never cast
    special = compute_module_sizes(
        model, dtype="float16", special_dtypes={"head.weight": "float32"}
    )
    assert special["head"] == full["head"]
    theirs = accelerate_modeling.compute_module_sizes(
        model, dtype="float16", special_dtypes={"head.weight": "float32"}
    )
    assert dict(special) == dict(theirs)
    max_memory = budgets(model, {0: 0.3, "cpu": 0.3})
    ours = infer_auto_device_map(model, max_memory, dtype=torch.float16)
    theirs = accelerate_modeling.infer_auto_device_map(model, max_memory, dtype=torch.float16)
    assert_same_or_unreserved(ours, theirs, max_memory)


@pytest.mark.parametrize("fractions", [*BUDGETS, {0: 1.0, 1: 1.0, 2: 1.0, "cpu": 1.0}])
@pytest.mark.parametrize("low_zero", [False, True])
def test_get_balanced_memory_matches_accelerate(fractions, low_zero, accelerate_modeling):
    model = make()
    max_memory = budgets(model, fractions)
    ours = get_balanced_memory(model, dict(max_memory), ["Block"], low_zero=low_zero)
    theirs = accelerate_modeling.get_balanced_memory(
        model, dict(max_memory), ["Block"], low_zero=low_zero
    )
    assert ours == theirs


def test_balanced_low_0_reads_budgets_by_device_id():
    # Accelerate #4297: with a GPU kept out by a zero budget, GPU 0 must still stay light.
    model = make(depth=6)
    total = sizes(model)[""]
    ours = get_balanced_memory(model, {0: total, 1: 0, 2: total, "cpu": total}, low_zero=True)
    assert ours[0] == 0


def test_strategies_differ_when_memory_is_plentiful(accelerate_modeling):
    model = make(tie=False, depth=6)
    max_memory = budgets(model, {0: 1.0, 1: 1.0, 2: 1.0, "cpu": 1.0})
    sequential = resolve_device_map(model, "sequential", max_memory=dict(max_memory))
    balanced = resolve_device_map(model, "balanced", max_memory=dict(max_memory))
    low0 = resolve_device_map(model, "balanced_low_0", max_memory=dict(max_memory))
    assert set(sequential.values()) == {0}
    assert set(balanced.values()) == {0, 1, 2}
    assert resolve_device_map(model, "auto", max_memory=dict(max_memory)) == balanced

    def on(device_map, device):
        return sum(sizes(model)[k] for k, v in device_map.items() if v == device)

    assert on(low0, 0) < on(balanced, 0)
    for strategy, ours in [("balanced", balanced), ("balanced_low_0", low0)]:
        theirs_memory = accelerate_modeling.get_balanced_memory(
            model, dict(max_memory), low_zero=strategy == "balanced_low_0"
        )
        assert dict(ours) == dict(accelerate_modeling.infer_auto_device_map(model, theirs_memory))


def test_resolve_device_map_rejects_unknown_strings_and_accepts_devices():
    model = make()
    with pytest.raises(ValueError, match="'balanced_low_0'"):
        resolve_device_map(model, "fastest")
    assert resolve_device_map(model, "cpu") == {"": "cpu"}
    assert resolve_device_map(model, 1) == {"": 1}
    assert resolve_device_map(model, {"": "disk"}) == {"": "disk"}


def test_impossible_budget_without_disk_names_layer_and_sizes():
    model = make(tie=False)
    s = sizes(model)
    with pytest.raises(ValueError) as info:
        infer_auto_device_map(
            model,
            {0: "1KB", "cpu": int(s["blocks.0"] * 0.5)},
            no_split_module_classes=["Block"],
            allow_disk=False,
        )
    message = str(info.value)
    assert "'embed'" in message or "'blocks.0'" in message
    assert "KiB" in message and "cpu" in message and "disk" in message
    # With disk allowed the same budget plans a disk offload, as Accelerate does.
    assert (
        "disk"
        in infer_auto_device_map(
            model, {0: "1KB", "cpu": int(s["blocks.0"] * 0.5)}, no_split_module_classes=["Block"]
        ).values()
    )


def test_headroom():
    assert get_max_memory({0: "1000MB", "cpu": "1000MB"}, headroom=0.2) == {
        0: 800_000_000,
        "cpu": 1_000_000_000,
    }
    assert get_max_memory({0: "1000MB"}) == {0: 1_000_000_000}  # explicit budgets are literal
    measured = get_max_memory()
    assert "cpu" in measured and measured["cpu"] > 0
    model = make()
    max_memory = budgets(model, {0: 1.0, "cpu": 1.0})
    tight = infer_auto_device_map(model, dict(max_memory), headroom=0.5)
    assert "cpu" in tight.values()


def test_get_max_memory_keys_and_errors():
    assert list(get_max_memory({"cpu": 1, "disk": 2, 1: 3, "cuda:0": 4})) == [0, 1, "cpu", "disk"]
    with pytest.raises(ValueError, match="'gpu7'"):
        get_max_memory({"gpu7": "1GB"})
    with pytest.raises(ValueError, match=r"max_memory\[0\].*'lots'"):
        get_max_memory({0: "lots"})


def test_get_max_memory_converts_string_budgets_in_the_callers_dict():
    # transformers' from_pretrained(max_memory=...) reads the caller's dict back as integers.
    budget = {"cpu": "1MB", "cuda:0": "2MB", "disk": 5}
    result = get_max_memory(budget, headroom=0.5)
    assert budget == {"cpu": 10**6, "cuda:0": 2 * 10**6, "disk": 5}
    assert result == {0: 10**6, "cpu": 10**6, "disk": 5}


def test_get_max_memory_converts_the_callers_string_sizes_in_place():
    # transformers' from_pretrained reads the caller's dict back and compares with integers.
    budget = {"cpu": "60KB", 0: 500, "disk": "1GiB"}
    assert get_max_memory(budget) == {0: 500, "cpu": 60_000, "disk": 2**30}
    assert budget == {"cpu": 60_000, 0: 500, "disk": 2**30}
    bad = {"cpu": "1GB", 0: "lots"}
    with pytest.raises(ValueError, match="'lots'"):
        get_max_memory(bad)
    assert bad == {"cpu": "1GB", 0: "lots"}  # untouched when any entry is invalid


def test_buffers_are_mapped_when_a_module_with_direct_buffers_is_split():
    # Accelerate #4014: a split module's own buffers got no device.
    class WithScalar(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(32, 32)
            self.b = nn.Linear(32, 32)
            self.register_buffer("scale", torch.ones(1))

    with init_empty_weights():
        model = nn.Sequential(WithScalar(), WithScalar())
    s = sizes(model)
    device_map = infer_auto_device_map(model, {0: int(s["0"] * 1.2), "cpu": 10**7})
    assert "0" not in device_map  # the first module was split...
    assert check_device_map(model, device_map) is None  # ...and every tensor has a device


def test_check_device_map_errors_name_keys():
    model = make()
    with pytest.raises(ValueError, match=r"'blocks\.9'"):
        check_device_map(model, {"": 0, "blocks.9": 1})
    with pytest.raises(ValueError, match=r"final\.weight, final\.bias"):
        check_device_map(model, {"embed": 0, "blocks": 0, "head": 0, "positions": 0})
    with pytest.raises(ValueError, match=r"device_map\[''\] = 'warp-drive' is not a device"):
        check_device_map(model, {"": "warp-drive"})
    check_device_map(model, {"embed": 0, "blocks": 0, "final": 1, "head": 0, "positions": 1})


def test_tied_on_different_devices_warns(caplog):
    model = make(tie=True)
    with caplog.at_level(logging.WARNING):
        check_device_map(model, {"embed": 0, "blocks": 0, "final": 0, "head": 1, "positions": 0})
    assert "head.weight" in caplog.text


def test_clean_device_map():
    assert clean_device_map({"a.x": 0, "a.y": 0, "b.x": 1, "b.y": "cpu"}) == {
        "a": 0,
        "b.x": 1,
        "b.y": "cpu",
    }
    assert clean_device_map({"a": 0, "b": 0}) == {"": 0}


def test_format_device_map_table():
    model = make(tie=False)
    device_map = infer_auto_device_map(model, budgets(model, {0: 0.4, "cpu": 2.0}))
    table = format_device_map(model, device_map)
    lines = table.splitlines()
    assert lines[0].split() == ["module", "device", "size"]
    for name, device in device_map.items():
        assert any(line.split()[:2] == [name, str(device)] for line in lines), name
    assert any(line.startswith("total") and " cpu " in line + " " for line in lines)


def test_resolve_logs_table(caplog):
    model = make(tie=False)
    with caplog.at_level(logging.INFO, logger="accel.big_model.device_map"):
        resolve_device_map(model, "sequential", max_memory={"cpu": "1GB"})
    assert "module" in caplog.text and "device" in caplog.text


def test_fallback_allocation_matches_accelerate(accelerate_modeling):
    with init_empty_weights():
        model = nn.Sequential(nn.Linear(32, 32), nn.Linear(4, 4), nn.Linear(32, 32))
    s = sizes(model)
    max_memory = {0: int(s["0"] + 100), "cpu": 10**7}
    kwargs = dict(no_split_module_classes=["Linear"])
    plain = infer_auto_device_map(model, dict(max_memory), **kwargs)
    assert 0 not in plain.values()
    ours = infer_auto_device_map(model, dict(max_memory), fallback_allocation=True, **kwargs)
    theirs = accelerate_modeling.infer_auto_device_map(
        model, dict(max_memory), fallback_allocation=True, **kwargs
    )
    assert dict(ours) == dict(theirs) == {"0": "cpu", "1": 0, "2": "cpu"}


def test_ties_made_under_init_empty_weights_survive():
    model = make(tie=True)
    assert model.head.weight is model.embed.weight


DEVICE_MAPS = [
    {"": "cpu"},
    {"h.1": 0, "h.10": "cpu", "": "disk"},
    {"embed": 0, "h": 1, "h.0.attn": "cpu", "lm_head": "disk"},
]
NAMES = ["h.1.weight", "h.10.bias", "h.0.attn.weight", "h.0.mlp.bias", "embed", "lm_head.weight"]


@pytest.mark.parametrize("device_map", DEVICE_MAPS)
def test_device_for_matches_accelerate(device_map, accelerate_modeling):
    from accel.big_model import device_for

    for name in NAMES:
        try:
            expected = accelerate_modeling._get_param_device(name, device_map)
        except ValueError:
            with pytest.raises(ValueError, match=repr(name)):
                device_for(device_map, name)
            assert device_for(device_map, name, default=None) is None
        else:
            assert device_for(device_map, name) == expected, name
