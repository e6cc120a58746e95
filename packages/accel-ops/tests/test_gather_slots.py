"""gather's reused buffers, on one process: the collective is stood in for by a copy.

With one process, ``all_gather_into_tensor`` copies ``send`` into ``output``; the 2-process
runs (repeated layouts, mismatches after a reused layout) are in tests-integration.
"""

from __future__ import annotations

import threading

import torch

from accel.ops.fingerprint import layout_fingerprint
from accel.ops.gather_slots import (
    INLINE_BYTES,
    MAX_KEPT_BYTES,
    MAX_LAYOUTS,
    SLOT_BYTES,
    GatherSlot,
    gather_slot,
)

CPU = torch.device("cpu")


def _gather_alone(leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    slot = gather_slot(leaves, CPU, 1)
    slot.fill(leaves)
    slot.output.copy_(slot.send)
    assert slot.fingerprints.tolist() == [layout_fingerprint(leaves)]
    return slot.results()


def test_mixed_dtypes_shapes_and_strides_come_back_exactly() -> None:
    leaves = [
        torch.tensor(2.5),
        torch.arange(6.0).reshape(3, 2)[:, 1],  # not contiguous
        torch.tensor([True, False, True]),
        torch.tensor([2**62 + 1, -3], dtype=torch.int64),
        torch.full((2, 2), 1.5, dtype=torch.bfloat16),
        torch.zeros(0, 3),
    ]
    results = _gather_alone(leaves)
    expected = [leaf.reshape(1) if leaf.dim() == 0 else leaf for leaf in leaves]
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want) and got.is_contiguous()


def test_results_are_new_tensors_not_views_of_the_reused_buffer() -> None:
    first = _gather_alone([torch.tensor([1.0, 2.0])])[0]
    second = _gather_alone([torch.tensor([3.0, 4.0])])[0]
    assert first.tolist() == [1.0, 2.0] and second.tolist() == [3.0, 4.0]
    scalar = _gather_alone([torch.tensor(7)])[0]
    gather_slot([torch.tensor(0)], CPU, 1).output.zero_()
    assert scalar.tolist() == [7]


def test_a_tensor_that_requires_grad_leaves_no_graph_on_the_buffer() -> None:
    weight = torch.ones(3, requires_grad=True)
    for leaves in ([weight * 2], [weight * 2, weight]):
        result = _gather_alone(leaves)[0]
        assert torch.equal(result, torch.full((3,), 2.0)) and not result.requires_grad
        slot = gather_slot(leaves, CPU, 1)
        assert not slot.send.requires_grad and slot.send.grad_fn is None


def test_one_slot_per_layout_and_at_most_max_layouts_per_thread() -> None:
    slot = gather_slot([torch.ones(2, 3)], CPU, 1)
    assert gather_slot([torch.zeros(2, 3)], CPU, 1) is slot
    assert gather_slot([torch.ones(3, 2)], CPU, 1) is not slot
    assert gather_slot([torch.ones(2, 3, dtype=torch.float64)], CPU, 1) is not slot
    assert gather_slot([torch.ones(2, 3)], CPU, 2) is not slot
    for size in range(1, 3 * MAX_LAYOUTS):
        assert _gather_alone([torch.arange(size)])[0].tolist() == list(range(size))
    oldest = gather_slot([torch.ones(1, 1)], CPU, 1)
    for size in range(1, MAX_LAYOUTS):
        gather_slot([torch.ones(1, size + 1)], CPU, 1)
    assert gather_slot([torch.ones(1, 1)], CPU, 1) is oldest  # MAX_LAYOUTS layouts so far: all kept
    gather_slot([torch.ones(1, MAX_LAYOUTS + 1)], CPU, 1)
    assert gather_slot([torch.ones(1, 1)], CPU, 1) is not oldest  # the oldest gave way


def test_many_processes_keep_fewer_layouts() -> None:
    count = MAX_KEPT_BYTES // SLOT_BYTES  # one slot's buffers pass MAX_KEPT_BYTES: one is kept
    first = gather_slot([torch.ones(1)], CPU, count)
    assert first.output.numel() == count * SLOT_BYTES
    assert gather_slot([torch.ones(1)], CPU, count) is first
    second = gather_slot([torch.ones(2)], CPU, count)
    assert gather_slot([torch.ones(2)], CPU, count) is second
    assert gather_slot([torch.ones(1)], CPU, count) is not first


def test_each_thread_has_its_own_slots() -> None:
    here = gather_slot([torch.ones(4)], CPU, 1)
    there: list[GatherSlot] = []
    worker = threading.Thread(target=lambda: there.append(gather_slot([torch.ones(4)], CPU, 1)))
    worker.start()
    worker.join()
    assert there and there[0] is not here and there[0].fingerprint == here.fingerprint


def test_inputs_over_the_inline_size_carry_only_the_fingerprint() -> None:
    big = [torch.ones(INLINE_BYTES // 4 + 1)]
    slot = gather_slot(big, CPU, 1)
    assert not slot.fits and slot.send.numel() == gather_slot([torch.ones(1)], CPU, 1).send.numel()
    slot.fill(big)
    assert slot.results() == []
    assert slot.send.view(torch.int64)[1:].eq(0).all()
    exactly = [torch.ones(INLINE_BYTES // 4)]
    assert gather_slot(exactly, CPU, 1).fits
