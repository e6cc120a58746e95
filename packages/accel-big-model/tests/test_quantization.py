"""Quantized loading: BnbQuantizationConfig checks, the pure-torch backend, and bitsandbytes.

The bitsandbytes tests run on CPU (bitsandbytes >= 0.45 has a CPU backend) and are skipped
when bitsandbytes is not installed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accel.big_model import (
    BnbQuantizationConfig,
    WeightOnlyLinear,
    get_keys_to_not_convert,
    init_empty_weights,
    load_and_quantize_model,
    save_sharded_safetensors,
)

# Max |quantized - fp32| output error, relative to max |fp32 output|.
TOLERANCE = {8: 0.02, 4: 0.15}


def make_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8)
    )


@pytest.fixture
def reference(tmp_path):
    torch.manual_seed(0)
    model = make_model()
    save_sharded_safetensors(model.state_dict(), tmp_path, max_shard_size="200KB")
    x = torch.randn(4, 256)
    with torch.no_grad():
        return tmp_path, x, model(x)


def relative_error(out: torch.Tensor, expected: torch.Tensor) -> float:
    return ((out.float() - expected).abs().max() / expected.abs().max()).item()


def load(folder, bits: int, backend: str, **kwargs) -> nn.Module:
    with init_empty_weights():
        model = make_model()
    config = BnbQuantizationConfig(
        load_in_8bit=bits == 8,
        load_in_4bit=bits == 4,
        backend=backend,
        torch_dtype="fp32",
        bnb_4bit_compute_dtype="fp32",
        **kwargs,
    )
    return load_and_quantize_model(model, config, weights_location=folder, device_map="cpu")


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, ["both False"]),
        ({"load_in_8bit": True, "load_in_4bit": True}, ["both True"]),
        ({"load_in_8bit": 1}, ["load_in_8bit=1", "True or False"]),
        ({"load_in_4bit": True, "bnb_4bit_quant_type": "int4"}, ["'int4'", "'fp4', 'nf4'"]),
        ({"load_in_4bit": True, "bnb_4bit_compute_dtype": "fp8"}, ["compute_dtype='fp8'", "bf16"]),
        ({"load_in_8bit": True, "torch_dtype": 3}, ["torch_dtype=3", "fp16"]),
        ({"load_in_8bit": True, "skip_modules": "lm_head"}, ["skip_modules='lm_head'", "list"]),
        ({"load_in_8bit": True, "backend": "gptq"}, ["backend='gptq'", "'torch'"]),
        ({"load_in_8bit": True, "llm_int8_threshold": "6"}, ["llm_int8_threshold='6'"]),
    ],
)
def test_config_errors_name_field_value_and_valid_values(kwargs, words):
    with pytest.raises(ValueError) as info:
        BnbQuantizationConfig(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_config_defaults_follow_accelerate():
    eight = BnbQuantizationConfig(load_in_8bit=True)
    assert (eight.torch_dtype, eight.target_dtype, eight.backend) == (
        torch.float16,
        torch.int8,
        "bitsandbytes",
    )
    four = BnbQuantizationConfig(load_in_4bit=True, bnb_4bit_compute_dtype="bf16")
    assert four.torch_dtype is torch.bfloat16
    assert four.target_dtype.value == "int4"
    with pytest.warns(UserWarning, match="8-bit"):
        BnbQuantizationConfig(load_in_4bit=True, llm_int8_threshold=3.0)


def test_keys_to_not_convert_keeps_head_and_tied_weights():
    model = make_model()
    assert get_keys_to_not_convert(model) == ["4"]
    model[2].weight = model[0].weight
    assert get_keys_to_not_convert(model) == ["0", "2", "4"]


# --------------------------------------------------------------------------- torch backend


@pytest.mark.parametrize("bits", [8, 4])
def test_torch_backend_close_to_fp32_with_a_quarter_of_the_memory(reference, bits):
    folder, x, expected = reference
    model = load(folder, bits, "torch", skip_modules=[])
    assert all(isinstance(model[i], WeightOnlyLinear) for i in (0, 2, 4))
    assert model.is_loaded_in_8bit is (bits == 8)
    with torch.no_grad():
        assert relative_error(model(x), expected) < TOLERANCE[bits]
    fp32 = sum(make_model()[i].weight.nelement() * 4 for i in (0, 2, 4))
    stored = sum(
        t.nelement() * t.element_size()
        for i in (0, 2, 4)
        for t in (model[i].weight, model[i].weight_scale)
    )
    assert stored / fp32 < (0.26 if bits == 8 else 0.145)


def test_torch_backend_default_skips_head_and_keeps_fp32_modules(reference):
    folder, x, expected = reference
    model = load(folder, 8, "torch", keep_in_fp32_modules=["2"])
    assert isinstance(model[0], WeightOnlyLinear)
    assert type(model[2]) is nn.Linear and model[2].weight.dtype is torch.float32
    assert type(model[4]) is nn.Linear
    with torch.no_grad():
        assert relative_error(model(x), expected) < TOLERANCE[8]


def test_torch_backend_with_disk_offloaded_unquantized_module(reference, tmp_path):
    folder, x, expected = reference
    with init_empty_weights():
        model = make_model()
    config = BnbQuantizationConfig(load_in_8bit=True, backend="torch", torch_dtype="fp32")
    device_map = {"0": "cpu", "1": "cpu", "2": "cpu", "3": "cpu", "4": "disk"}
    model = load_and_quantize_model(
        model, config, folder, device_map=device_map, offload_folder=tmp_path / "offload"
    )
    assert model[4].weight.device.type == "meta"
    with torch.no_grad():
        assert relative_error(model(x), expected) < TOLERANCE[8]


def test_quantized_layer_on_disk_is_refused(reference, tmp_path):
    folder, _, _ = reference
    with init_empty_weights():
        model = make_model()
    config = BnbQuantizationConfig(load_in_8bit=True, backend="torch")
    with pytest.raises(ValueError, match="cannot be offloaded"):
        load_and_quantize_model(
            model, config, folder, device_map={"": "disk"}, offload_folder=tmp_path
        )


def test_loaded_model_is_quantized_in_place():
    torch.manual_seed(0)
    model = make_model()
    x = torch.randn(3, 256)
    with torch.no_grad():
        expected = model(x)
    config = BnbQuantizationConfig(load_in_8bit=True, backend="torch", torch_dtype="fp32")
    model = load_and_quantize_model(model, config)
    assert isinstance(model[0], WeightOnlyLinear) and type(model[4]) is nn.Linear
    with torch.no_grad():
        assert relative_error(model(x), expected) < TOLERANCE[8]


def test_meta_model_without_weights_location_is_an_error():
    with init_empty_weights():
        model = make_model()
    with pytest.raises(ValueError, match="weights_location"):
        load_and_quantize_model(model, BnbQuantizationConfig(load_in_8bit=True, backend="torch"))


def test_weight_only_linear_odd_width_int4_round_trip():
    torch.manual_seed(0)
    linear = nn.Linear(33, 5)
    q = WeightOnlyLinear.from_linear(linear, bits=4)
    assert tuple(q.weight.shape) == (5, 17)
    error = (q.dequantize() - linear.weight).abs().max()
    assert error <= linear.weight.abs().max() / 7 / 2 + 1e-6  # half a quantization step


# --------------------------------------------------------------------------- bitsandbytes


@pytest.mark.parametrize("bits", [8, 4])
def test_bitsandbytes_cpu_backend(reference, bits):
    bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")
    folder, x, expected = reference
    extra = {"bnb_4bit_quant_type": "nf4"} if bits == 4 else {}
    model = load(folder, bits, "bitsandbytes", **extra)
    layer = bnb.nn.Linear8bitLt if bits == 8 else bnb.nn.Linear4bit
    assert isinstance(model[0], layer) and isinstance(model[2], layer)
    assert type(model[4]) is nn.Linear  # the head stays unquantized by default
    assert model[0].weight.dtype == (torch.int8 if bits == 8 else torch.uint8)
    with torch.no_grad():
        assert relative_error(model(x), expected) < TOLERANCE[bits]
