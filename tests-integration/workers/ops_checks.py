"""accel.ops collectives under a real 2-process job (gloo, CPU), with real values.

Every rank builds its inputs from its rank (``_payload``), so each check can compute what a
gather, reduce or broadcast must return and compare exactly.
"""

from __future__ import annotations

import os
from collections import OrderedDict, namedtuple
from datetime import timedelta

import torch
import torch.distributed as dist
from _harness import Checks

from accel.ops import (
    DistributedOperationException,
    broadcast,
    broadcast_object_list,
    copy_tensor_to_devices,
    gather,
    gather_object,
    pad_across_processes,
    reduce,
    set_seed,
    synchronize_rng_state,
    synchronize_rng_states,
)
from accel.state import PartialState

RANK = int(os.environ["RANK"])
checks = Checks()
state = PartialState(timeout=timedelta(seconds=60))
Pair = namedtuple("Pair", ["low", "high"])
DTYPES = (torch.float32, torch.float64)


def everyone(value):
    """``value`` from every rank, in rank order (raw torch, independent of accel.ops)."""
    gathered = [None] * 2
    dist.all_gather_object(gathered, value)
    return gathered


def same(actual, expected):
    """Assert two tensors match exactly in dtype, shape and values."""
    assert isinstance(actual, torch.Tensor), type(actual)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.equal(actual, expected), (actual, expected)


def raises(error_type, function, *args, **kwargs):
    """Assert ``function(*args, **kwargs)`` raises ``error_type``; return the error text."""
    try:
        function(*args, **kwargs)
    except error_type as error:
        return str(error)
    raise AssertionError(f"{function.__name__} did not raise {error_type.__name__}")


def _payload(rank):
    """A nested structure with mixed dtypes whose values depend on ``rank``."""
    return {
        "f32": torch.tensor([[rank + 0.25, rank + 0.5]]),
        "list": [
            torch.tensor([2**62 + rank, -rank], dtype=torch.int64),
            torch.tensor([rank == 0, rank == 1, True]),
        ],
        "pair": Pair(
            torch.tensor([rank + 1.5], dtype=torch.bfloat16),
            torch.tensor([[rank * 1e-300]], dtype=torch.float64),
        ),
        "ordered": OrderedDict(z=torch.tensor(rank, dtype=torch.int32), a=torch.ones(1, 2) * rank),
    }


@checks.add
def gather_tensor():
    same(gather(torch.tensor([RANK * 10.0, RANK * 10 + 1.0])), torch.tensor([0.0, 1, 10, 11]))
    matrix = torch.full((2, 3), RANK)
    same(gather(matrix), torch.cat([torch.full((2, 3), 0), torch.full((2, 3), 1)]))


@checks.add
def gather_zero_dim():
    same(gather(torch.tensor(RANK + 0.5)), torch.tensor([0.5, 1.5]))


@checks.add
def gather_nested_mixed_dtypes():
    mine = _payload(RANK)
    out = gather(mine)
    zero, one = _payload(0), _payload(1)
    assert type(out) is dict and list(out) == ["f32", "list", "pair", "ordered"]
    same(out["f32"], torch.cat([zero["f32"], one["f32"]]))
    assert type(out["list"]) is list and len(out["list"]) == 2
    same(out["list"][0], torch.cat([zero["list"][0], one["list"][0]]))
    same(out["list"][1], torch.cat([zero["list"][1], one["list"][1]]))
    assert type(out["pair"]) is Pair
    same(out["pair"].low, torch.cat([zero["pair"].low, one["pair"].low]))
    same(out["pair"].high, torch.cat([zero["pair"].high, one["pair"].high]))
    assert type(out["ordered"]) is OrderedDict and list(out["ordered"]) == ["z", "a"]
    same(out["ordered"]["z"], torch.tensor([0, 1], dtype=torch.int32))
    same(out["ordered"]["a"], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    for key, value in _payload(RANK).items():  # the input is left as it was
        if isinstance(value, torch.Tensor):
            same(mine[key], value)


@checks.add
def gather_int64_keeps_exact_values():
    out = gather(torch.tensor([2**62 + 2 * RANK + 1], dtype=torch.int64))
    assert out.tolist() == [2**62 + 1, 2**62 + 3], out.tolist()


@checks.add
def reduce_sum():
    same(reduce(torch.tensor([RANK + 1.0, 2.0 * RANK]), "sum"), torch.tensor([3.0, 2.0]))
    same(reduce(torch.tensor([RANK + 1, 5]), "sum"), torch.tensor([3, 10]))


@checks.add
def reduce_mean():
    same(reduce(torch.tensor([RANK + 1.0, 4.0 * RANK])), torch.tensor([1.5, 2.0]))
    same(reduce(torch.tensor([RANK + 1.0]), reduction="mean"), torch.tensor([1.5]))


@checks.add
def reduce_max_min():
    values = torch.tensor([RANK * 4.0 - 1, -RANK * 3.0])
    same(reduce(values, "max"), torch.tensor([3.0, 0.0]))
    same(reduce(values, "min"), torch.tensor([-1.0, -3.0]))
    same(reduce(torch.tensor([RANK, 7 - RANK]), "max"), torch.tensor([1, 7]))


@checks.add
def reduce_none_is_sum():
    same(reduce(torch.tensor([RANK + 1.0]), "none"), torch.tensor([3.0]))


@checks.add
def reduce_scale():
    same(reduce(torch.tensor([RANK + 1.0]), "sum", scale=0.5), torch.tensor([1.5]))
    same(reduce(torch.tensor([RANK + 1.0]), "mean", scale=4.0), torch.tensor([6.0]))


@checks.add
def reduce_bool_max_min():
    flags = torch.tensor([RANK == 0, True, False])
    same(reduce(flags, "max"), torch.tensor([True, True, False]))
    same(reduce(flags, "min"), torch.tensor([False, True, False]))


@checks.add
def reduce_nested_leaves_input_untouched():
    data = {
        "a": torch.tensor([RANK + 1.0]),
        "b": [torch.tensor([[RANK * 2.0]]), torch.tensor([RANK], dtype=torch.int64)],
    }
    out = reduce(data, "sum")
    same(out["a"], torch.tensor([3.0]))
    same(out["b"][0], torch.tensor([[2.0]]))
    same(out["b"][1], torch.tensor([1]))
    same(data["a"], torch.tensor([RANK + 1.0]))
    assert out["a"] is not data["a"]


@checks.add
def reduce_mean_of_int_is_type_error():
    text = raises(TypeError, reduce, torch.tensor([RANK, 1]), "mean")
    assert "int64" in text, text


@checks.add
def reduce_unknown_reduction_is_value_error():
    text = raises(ValueError, reduce, torch.tensor([1.0]), "median")
    assert "median" in text, text


def _broadcast_from(source):
    tensor = torch.full((3,), float(RANK))
    nested = {"w": torch.full((2, 2), RANK * 1.5), "ids": [torch.tensor([RANK, RANK + 10])]}
    out = broadcast(tensor, from_process=source)
    assert out is tensor, "broadcast must return its (in-place updated) input"
    same(tensor, torch.full((3,), float(source)))
    out = broadcast(nested, from_process=source)
    same(nested["w"], torch.full((2, 2), source * 1.5))
    same(nested["ids"][0], torch.tensor([source, source + 10]))
    same(out["w"], torch.full((2, 2), source * 1.5))


@checks.add
def broadcast_from_process_0_in_place():
    _broadcast_from(0)


@checks.add
def broadcast_from_process_1_in_place():
    _broadcast_from(1)


@checks.add
def broadcast_from_process_out_of_range():
    text = raises(ValueError, broadcast, torch.ones(1), from_process=2)
    assert "from_process=2" in text, text
    raises(ValueError, broadcast, torch.ones(1), from_process=-1)
    raises(ValueError, broadcast_object_list, [1], from_process=5)


@checks.add
def pad_different_lengths():
    tensor = torch.arange(1, 3 + 2 * RANK)  # rank 0: [1, 2]; rank 1: [1, 2, 3, 4]
    padded = pad_across_processes(tensor)
    same(padded, torch.tensor([1, 2, 0, 0]) if RANK == 0 else torch.arange(1, 5))
    same(gather(padded), torch.tensor([1, 2, 0, 0, 1, 2, 3, 4]))


@checks.add
def pad_dim1_with_pad_index():
    tensor = torch.ones(2, 1 + 2 * RANK)
    padded = pad_across_processes(tensor, dim=1, pad_index=-1)
    expected = torch.tensor([[1.0, -1, -1]] * 2) if RANK == 0 else torch.ones(2, 3)
    same(padded, expected)


@checks.add
def pad_first():
    tensor = torch.tensor([5, 6]) if RANK == 0 else torch.tensor([5, 6, 7])
    padded = pad_across_processes(tensor, pad_index=9, pad_first=True)
    same(padded, torch.tensor([9, 5, 6]) if RANK == 0 else torch.tensor([5, 6, 7]))


@checks.add
def pad_leaves_too_few_dims_untouched():
    vector = torch.tensor([RANK, RANK])
    data = {"matrix": torch.zeros(1, 2 + RANK), "vector": vector, "scalar": torch.tensor(1.0)}
    out = pad_across_processes(data, dim=1)
    assert out["matrix"].shape == (1, 3), out["matrix"].shape
    assert out["vector"] is vector and out["scalar"] is data["scalar"]


@checks.add
def gather_object_flattens_lists():
    assert gather_object([f"r{RANK}", RANK]) == ["r0", 0, "r1", 1]
    assert gather_object((RANK,)) == [0, 1]
    assert gather_object([{"rank": RANK}] * (RANK + 1)) == [{"rank": 0}, {"rank": 1}, {"rank": 1}]


@checks.add
def gather_object_non_list():
    assert gather_object({"rank": RANK}) == [{"rank": 0}, {"rank": 1}]
    assert gather_object(f"text{RANK}") == ["text0", "text1"]


@checks.add
def broadcast_object_list_from_0_and_1():
    objects = [{"from": RANK}, f"rank{RANK}"]
    out = broadcast_object_list(objects)
    assert out is objects and objects == [{"from": 0}, "rank0"], objects
    objects = [RANK, None]
    broadcast_object_list(objects, from_process=1)
    assert objects == [1, None], objects


def _draws(generator=None):
    return torch.rand(4).tolist() + torch.rand(4, generator=generator).tolist()


@checks.add
def synchronize_rng_states_torch_and_generator():
    torch.manual_seed(100 + RANK)
    generator = torch.Generator().manual_seed(200 + RANK)
    before = everyone(_draws(generator))
    assert before[0] != before[1], "ranks drew the same numbers before synchronizing"
    synchronize_rng_states(["torch", "generator"], generator=generator)
    after = everyone(_draws(generator))
    assert after[0] == after[1], "ranks drew different numbers after synchronizing"
    torch.manual_seed(100)  # process 0's states, replayed: the synchronized state is rank 0's
    reference = torch.Generator().manual_seed(200)
    _draws(reference)
    assert _draws(reference) == after[0]


@checks.add
def synchronize_rng_state_default_torch():
    torch.manual_seed(300 + RANK)
    synchronize_rng_state()
    draws = everyone(torch.rand(3).tolist())
    assert draws[0] == draws[1], draws


@checks.add
def set_seed_device_specific_differs_per_rank():
    set_seed(42, device_specific=True)
    mine = torch.rand(3).tolist()
    torch.manual_seed(42 + RANK)
    assert mine == torch.rand(3).tolist()
    draws = everyone(mine)
    assert draws[0] != draws[1], draws
    set_seed(42)
    draws = everyone(torch.rand(3).tolist())
    assert draws[0] == draws[1], draws


@checks.add
def non_tensor_leaf_is_type_error():
    data = {"a": torch.ones(1), "b": "text"}
    for operation in (gather, reduce, broadcast, pad_across_processes):
        text = raises(TypeError, operation, data)
        assert "str" in text, (operation.__name__, text)


@checks.add
def copy_tensor_to_devices_from_the_one_holder():
    held = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3) if RANK == 1 else None
    same(copy_tensor_to_devices(held), torch.arange(6, dtype=torch.bfloat16).reshape(2, 3))
    text = raises(ValueError, copy_tensor_to_devices, torch.ones(1))
    assert "holders: [0, 1]" in text, text
    text = raises(ValueError, copy_tensor_to_devices, None)
    assert "holders: none" in text, text


@checks.add
def group_still_in_step_after_errors():
    same(gather(torch.tensor([RANK])), torch.tensor([0, 1]))


@checks.add
def gather_shape_mismatch_raises_without_debug_mode():
    # without ACCEL_DEBUG_MODE, gather still compares a fingerprint of its tensors' layout:
    # every rank raises, naming each rank's shapes, instead of wrong data or a gloo abort
    assert not state.debug
    text = raises(DistributedOperationException, gather, {"x": torch.ones(2 + RANK)})
    assert "process 0: gather({'x': 'float32[2]'})" in text, text
    assert "process 1: gather({'x': 'float32[3]'})" in text, text
    text = raises(DistributedOperationException, gather, torch.ones(2, dtype=DTYPES[RANK]))
    assert "float32[2]" in text and "float64[2]" in text, text


@checks.add
def pad_mismatch_outside_dim_raises_without_debug_mode():
    text = raises(DistributedOperationException, pad_across_processes, torch.ones(1, 2 + RANK))
    assert "float32[*, 2]" in text and "float32[*, 3]" in text, text


@checks.add
def gather_inline_and_bucketed_sizes_and_odd_dtypes():
    # up to 4 KB rides along with the layout check; larger inputs take the bucketed path
    for numel in (1, 1000, 1025, 5000):
        same(gather(torch.arange(numel) + RANK * numel), torch.arange(2 * numel))
    flags = torch.tensor([RANK == 0, True, False])
    same(gather(flags), torch.tensor([True, True, False, False, True, False]))
    half = torch.full((3,), 0.5 + RANK, dtype=torch.bfloat16)
    same(gather({"h": half})["h"], torch.tensor([0.5] * 3 + [1.5] * 3, dtype=torch.bfloat16))
    column = torch.arange(6.0).reshape(3, 2)[:, 1] + RANK  # not contiguous
    same(gather(column), torch.tensor([1.0, 3, 5, 2, 4, 6]))


@checks.add
def gather_mismatch_between_inline_and_bucketed_sizes_raises():
    text = raises(DistributedOperationException, gather, torch.ones(10 if RANK == 0 else 5000))
    assert "float32[10]" in text and "float32[5000]" in text, text


@checks.add
def gather_repeated_layout_gives_new_tensors_each_call():
    # a gather of a layout seen before reuses its buffers; each result is still its own tensor
    first = gather(torch.tensor([RANK + 0.5, RANK + 1.5]))
    second = gather(torch.tensor([RANK + 10.0, RANK + 20.0]))
    same(first, torch.tensor([0.5, 1.5, 1.5, 2.5]))
    same(second, torch.tensor([10.0, 20.0, 11.0, 21.0]))
    losses = [gather(torch.tensor(step + RANK / 10)) for step in range(3)]
    for step, loss in enumerate(losses):
        same(loss, torch.tensor([step, step + 0.1]))
    weight = torch.ones(3, requires_grad=True)
    out = gather({"w": weight * (RANK + 1), "b": weight})
    same(out["w"], torch.tensor([1.0] * 3 + [2.0] * 3))
    assert not out["w"].requires_grad


@checks.add
def gather_more_layouts_than_are_kept_in_rotation():
    for _ in range(2):
        for size in range(1, 13):
            same(gather(torch.arange(size) + RANK * size), torch.arange(2 * size))


@checks.add
def gather_mismatch_after_the_layout_was_gathered_raises():
    # the layout's buffers exist on both ranks; rank 1 then passes another shape
    same(gather(torch.ones(4) * RANK), torch.tensor([0.0] * 4 + [1.0] * 4))
    text = raises(DistributedOperationException, gather, torch.ones(4 + RANK))
    assert "float32[4]" in text and "float32[5]" in text, text
    text = raises(DistributedOperationException, gather, torch.ones(4, dtype=DTYPES[RANK]))
    assert "float32[4]" in text and "float64[4]" in text, text
    same(gather(torch.ones(4) * RANK), torch.tensor([0.0] * 4 + [1.0] * 4))


@checks.add
def reduce_and_broadcast_one_tensor():
    loss = torch.tensor(RANK + 0.5)
    same(reduce(loss), torch.tensor(1.0))
    same(loss, torch.tensor(RANK + 0.5))
    same(
        reduce(torch.arange(6.0).reshape(2, 3).t() * (RANK + 1), "sum", scale=2.0),
        torch.arange(6.0).reshape(2, 3).t() * 6,
    )
    column = torch.zeros(3, 2)[:, 0]  # not contiguous: broadcast copies back into it
    column += RANK + 1
    broadcast(column, from_process=1)
    same(column, torch.full((3,), 2.0))
    flat = torch.arange(4) * (RANK + 1)
    assert broadcast(flat, from_process=1) is flat
    same(flat, torch.arange(4) * 2)


@checks.add
def collectives_work_after_a_mismatch():
    same(gather(torch.tensor([RANK])), torch.tensor([0, 1]))
    same(pad_across_processes(torch.ones(1 + RANK)), torch.tensor([1.0, float(RANK)]))


checks.run(RANK)
dist.destroy_process_group()
