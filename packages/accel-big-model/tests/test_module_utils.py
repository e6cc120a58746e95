"""accel.big_model.module_utils: offload-aware device alignment and storage identity."""

from __future__ import annotations

import doctest

import torch
from torch import nn

import accel.big_model as bm
from accel.big_model import module_utils


def test_docstring_examples_run() -> None:
    result = doctest.testmod(module_utils, raise_on_error=False, verbose=False)
    assert result.failed == 0 and result.attempted > 0, result


def test_align_module_device_loads_offloaded_weights_for_the_block() -> None:
    layer = nn.Linear(2, 2)
    expected = layer.weight.detach().clone()
    bm.add_hook_to_module(layer, bm.AlignDevicesHook("cpu", offload=True))
    assert layer.weight.device.type == "meta"
    with bm.align_module_device(layer):
        assert torch.equal(layer.weight, expected)
    assert layer.weight.device.type == "meta"


def test_storage_identity_and_bottom_up_order() -> None:
    a = torch.zeros(4)
    assert bm.id_tensor_storage(a) != bm.id_tensor_storage(torch.zeros(4))
    meta = torch.empty(3, dtype=torch.float16, device="meta")
    assert bm.id_tensor_storage(meta) == (torch.device("meta"), 0, 6)
    net = nn.Sequential(nn.Linear(2, 2))
    assert bm.get_module_children_bottom_up(net)[-1] is net
