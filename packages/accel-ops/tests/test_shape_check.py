"""The layout fingerprint that gather and pad_across_processes compare across processes."""

from __future__ import annotations

import pytest
import torch

from accel.ops import DistributedOperationException
from accel.ops.fingerprint import layout_fingerprint
from accel.ops.shape_check import fingerprint_probe, raise_on_mismatch
from accel.state import PartialState


def test_equal_layouts_give_equal_fingerprints_whatever_the_values():
    assert layout_fingerprint([torch.ones(2, 3), torch.arange(4)]) == layout_fingerprint(
        [torch.zeros(2, 3), torch.arange(4) * 7]
    )


def test_shape_dtype_order_and_count_change_the_fingerprint():
    base = layout_fingerprint([torch.ones(2, 3), torch.arange(4)])
    others = [
        [torch.ones(3, 2), torch.arange(4)],
        [torch.ones(6), torch.arange(4)],
        [torch.ones(2, 3, dtype=torch.float64), torch.arange(4)],
        [torch.arange(4), torch.ones(2, 3)],
        [torch.ones(2, 3)],
        [torch.ones(2, 3), torch.arange(4), torch.ones(())],
    ]
    fingerprints = {layout_fingerprint(leaves) for leaves in others}
    assert base not in fingerprints and len(fingerprints) == len(others)


def test_ignored_dimension_may_differ_and_others_may_not():
    assert layout_fingerprint([torch.ones(2, 3)], ignore_dim=0) == layout_fingerprint(
        [torch.ones(5, 3)], ignore_dim=0
    )
    assert layout_fingerprint([torch.ones(2, 3)], ignore_dim=-1) != layout_fingerprint(
        [torch.ones(2, 4)], ignore_dim=0
    )
    # a 0-dim tensor has no dim 0: its (empty) shape is compared as it is
    assert layout_fingerprint([torch.ones(())], ignore_dim=0) == layout_fingerprint(
        [torch.zeros(())]
    )


def test_nested_tensor_is_fingerprinted_without_its_ragged_shape():
    nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    assert layout_fingerprint([nested]) == layout_fingerprint(
        [torch.nested.nested_tensor([torch.ones(4), torch.ones(1)])]
    )


def test_fingerprint_and_its_negation_fit_in_int64():
    value = layout_fingerprint([torch.ones(1)])
    assert 0 <= value < 2**62
    assert fingerprint_probe(value, torch.device("cpu"), [5]).tolist() == [value, -value, 5]


def test_agreeing_fingerprints_pass():
    assert raise_on_mismatch(PartialState(), "gather", [7, -7], lambda: "float32[2]") is None


def test_differing_fingerprints_raise_naming_this_process_inputs():
    with pytest.raises(DistributedOperationException) as info:
        raise_on_mismatch(PartialState(), "gather", [9, -7], lambda: "float32[2]")
    message = str(info.value)
    assert "accel.ops.gather" in message and "process 0: float32[2]" in message
    assert "ACCEL_DEBUG_MODE=1" in message
