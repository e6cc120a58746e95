"""Sizes, meta-device init, tensor placement and tied parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accel.big_model.dtypes import dtype_byte_size
from accel.big_model.init import init_empty_weights, init_on_device
from accel.big_model.sizes import (
    calculate_maximum_sizes,
    compute_module_sizes,
    convert_file_size_to_int,
    get_max_layer_size,
)
from accel.big_model.tensors import named_module_tensors, set_module_tensor_to_device
from accel.big_model.tied import find_tied_parameters, retie_parameters
from accel.state.enums import CustomDtype


@pytest.fixture
def accelerate_modeling():
    """Accelerate's modeling helpers: only the side-by-side comparisons need the reference."""
    return pytest.importorskip("accelerate.utils.modeling")


@pytest.mark.parametrize(
    "text", ["10GB", "10GiB", "500MB", "1.5MiB", "3KB", "2kib", "8Mb", 1234, "0MB"]
)
def test_convert_file_size_to_int_matches_accelerate(text, accelerate_modeling):
    assert convert_file_size_to_int(text) == accelerate_modeling.convert_file_size_to_int(text)


@pytest.mark.parametrize("bad", ["ten GB", "-1GB", "5XB", -3, None])
def test_convert_file_size_to_int_errors_name_value(bad):
    with pytest.raises(ValueError, match="not a valid memory size"):
        convert_file_size_to_int(bad)


def test_dtype_byte_size(accelerate_modeling):
    for dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int8,
        torch.int64,
        torch.bool,
    ):
        assert dtype_byte_size(dtype) == accelerate_modeling.dtype_byte_size(dtype)
    assert dtype_byte_size(torch.float8_e4m3fn) == 1
    assert dtype_byte_size(CustomDtype.INT4) == 0.5
    assert dtype_byte_size(CustomDtype.INT2) == 0.25
    assert dtype_byte_size(CustomDtype.FP8) == 1


def nested_model() -> nn.Module:
    with init_empty_weights():
        model = nn.Sequential(
            nn.Embedding(10, 8),
            nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)),
            nn.Linear(8, 10),
        )
    model[2].weight = nn.Parameter(torch.empty(10, 8, device="meta"))
    return model


def test_compute_module_sizes_and_layers_match_accelerate(accelerate_modeling):
    model = nested_model()
    ours = compute_module_sizes(model)
    assert dict(ours) == dict(accelerate_modeling.compute_module_sizes(model))
    top = list(model.named_children())
    assert get_max_layer_size(top, ours, []) == accelerate_modeling.get_max_layer_size(
        top, ours, []
    )
    assert get_max_layer_size(top, ours, ["Sequential"])[1] == ["1"]
    assert calculate_maximum_sizes(model) == accelerate_modeling.calculate_maximum_sizes(model)


def test_init_empty_weights_buffers():
    with init_empty_weights():
        bn = nn.BatchNorm1d(4)
    assert bn.weight.device.type == "meta" and bn.running_mean.device.type == "cpu"
    with init_empty_weights(include_buffers=True):
        bn = nn.BatchNorm1d(4)
    assert bn.weight.device.type == "meta" and bn.running_mean.device.type == "meta"
    assert isinstance(bn.weight, nn.Parameter) and bn.weight.requires_grad
    # Patches are undone afterwards, even after an error.
    with pytest.raises(RuntimeError), init_empty_weights(include_buffers=True):
        raise RuntimeError
    assert nn.BatchNorm1d(2).running_mean.device.type == "cpu"
    assert nn.Linear(2, 2).weight.device.type == "cpu"


def test_init_include_buffers_env(monkeypatch):
    monkeypatch.setenv("ACCELERATE_INIT_INCLUDE_BUFFERS", "1")
    with init_empty_weights():
        bn = nn.BatchNorm1d(4)
    assert bn.running_mean.device.type == "meta"


def test_init_on_device():
    with init_on_device("cpu", include_buffers=True):
        layer = nn.BatchNorm1d(2)
    assert layer.weight.device.type == "cpu" and layer.running_mean.device.type == "cpu"
    with init_on_device(torch.device("meta")):
        layer = nn.Linear(2, 2)
    assert layer.weight.device.type == "meta"


def test_set_module_tensor_to_device_value_and_dtype():
    with init_empty_weights():
        model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="meta device"):
        set_module_tensor_to_device(model, "0.weight", "cpu")
    set_module_tensor_to_device(
        model, "0.weight", "cpu", value=torch.ones(2, 2, dtype=torch.float64)
    )
    assert model[0].weight.dtype == torch.float32  # cast to the model's dtype
    assert isinstance(model[0].weight, nn.Parameter) and model[0].weight.requires_grad
    set_module_tensor_to_device(model, "0.bias", "cpu", value=torch.ones(2), dtype=torch.float16)
    assert model[0].bias.dtype == torch.float16
    set_module_tensor_to_device(model, "1.num_batches_tracked", "cpu", value=torch.tensor(3))
    assert model[1].num_batches_tracked.dtype == torch.int64
    set_module_tensor_to_device(model, "0.weight", "cpu", dtype="float16")
    assert model[0].weight.dtype == torch.float16 and model[0].weight.device.type == "cpu"
    set_module_tensor_to_device(model, "0.weight", "meta")
    assert model[0].weight.device.type == "meta"


def test_set_module_tensor_to_device_errors_name_things():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"'0.wieght'.*bias, weight"):
        set_module_tensor_to_device(model, "0.wieght", "cpu")
    with pytest.raises(ValueError, match="no submodule '3'"):
        set_module_tensor_to_device(model, "3.weight", "cpu")
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
        set_module_tensor_to_device(model, "0.bias", "cpu", value=torch.ones(3))


def test_tied_params_map_reuses_placed_tensor():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight
    shared = model[0].weight
    tied_map = {shared.data_ptr(): {}}
    set_module_tensor_to_device(model, "0.weight", "meta", tied_params_map=tied_map)
    assert "meta" in tied_map[shared.data_ptr()]
    set_module_tensor_to_device(model, "1.weight", "meta", tied_params_map=tied_map)
    assert model[0].weight is model[1].weight


def test_named_module_tensors():
    model = nn.Sequential(nn.BatchNorm1d(2))
    model[0].register_buffer("scratch", torch.zeros(1), persistent=False)
    names = [n for n, _ in named_module_tensors(model, recurse=True, remove_non_persistent=True)]
    assert "0.scratch" not in names and "0.running_mean" in names
    assert [n for n, _ in named_module_tensors(model[0], include_buffers=False)] == [
        "weight",
        "bias",
    ]


def test_find_and_retie_parameters(accelerate_modeling):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3))
    model[2].weight = model[0].weight
    assert find_tied_parameters(model) == [["0.weight", "2.weight"]]
    assert find_tied_parameters(model) == accelerate_modeling.find_tied_parameters(model)
    model[2].weight = nn.Parameter(model[0].weight.detach().clone())
    assert find_tied_parameters(model) == []
    retie_parameters(model, [["0.weight", "2.weight"]])
    assert model[2].weight is model[0].weight
