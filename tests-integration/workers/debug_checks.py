"""Debug mode of accel.ops under a real 2-process job: mismatches raise everywhere.

With ``ACCEL_DEBUG_MODE=1`` (or ``ACCELERATE_DEBUG_MODE=1``) every collective first compares
what each process passes and raises ``DistributedOperationException`` on all of them when
they differ. Each check records how long it took, so the test can show nothing hung.

``--preinit``: the worker starts the process group itself before creating ``PartialState``,
which must adopt that group rather than start another.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from _harness import Checks

from accel.ops import (
    DistributedOperationException,
    broadcast,
    broadcast_object_list,
    gather,
    gather_object,
    pad_across_processes,
    reduce,
)
from accel.state import DistributedType, PartialState

RANK = int(os.environ["RANK"])
PREINIT = "--preinit" in sys.argv
checks = Checks()
state: PartialState | None = None
group = None


@checks.add
def create_state():
    global state, group
    if PREINIT:
        dist.init_process_group("gloo", timeout=timedelta(seconds=60))
        group = dist.distributed_c10d._get_default_group()
        state = PartialState()
    else:
        state = PartialState(timeout=timedelta(seconds=60))
    assert state.debug, "debug mode is off although the environment turns it on"


if PREINIT:

    @checks.add
    def existing_group_adopted():
        assert dist.distributed_c10d._get_default_group() is group, "a second group was created"
        assert (state.num_processes, state.process_index) == (2, RANK)
        assert state.local_process_index == int(os.environ["LOCAL_RANK"])
        assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
        assert state.backend == "gloo" and state.device == torch.device("cpu")
        assert state.is_main_process == (RANK == 0)
        value = torch.tensor([float(RANK + 1)])
        dist.all_reduce(value)
        assert value.item() == 3.0


def mismatch(operation, data, shown, **kwargs):
    """Assert ``operation(data)`` raises DistributedOperationException on this rank whose
    message has a line per process naming what that process passed (``shown[rank]``)."""
    try:
        operation(data, **kwargs)
    except DistributedOperationException as error:
        text = str(error)
        lines = {
            rank: next((ln for ln in text.splitlines() if f"process {rank}:" in ln), "")
            for rank in shown
        }
        for rank, piece in shown.items():
            assert piece in lines[rank], f"process {rank}'s {piece!r} missing from:\n{text}"
        return
    raise AssertionError(f"{operation.__name__} did not raise DistributedOperationException")


@checks.add
def gather_shape_mismatch_raises():
    mismatch(gather, torch.ones(2 + RANK), {0: "float32[2]", 1: "float32[3]"})


@checks.add
def reduce_shape_mismatch_raises():
    mismatch(reduce, torch.ones(2, 1 + RANK), {0: "float32[2, 1]", 1: "float32[2, 2]"})


@checks.add
def broadcast_shape_mismatch_raises():
    mismatch(broadcast, torch.ones(4 - RANK), {0: "float32[4]", 1: "float32[3]"})


@checks.add
def gather_dtype_mismatch_raises():
    tensor = torch.ones(2) if RANK == 0 else torch.ones(2, dtype=torch.int64)
    mismatch(gather, tensor, {0: "float32[2]", 1: "int64[2]"})


@checks.add
def reduce_dtype_mismatch_raises():
    tensor = torch.ones(3) if RANK == 0 else torch.ones(3, dtype=torch.float64)
    mismatch(reduce, tensor, {0: "float32[3]", 1: "float64[3]"}, reduction="sum")


@checks.add
def gather_structure_mismatch_raises():
    data = {"a": torch.ones(1)} if RANK == 0 else {"b": torch.ones(1)}
    mismatch(gather, data, {0: "'a'", 1: "'b'"})


@checks.add
def pad_mismatch_outside_dim_raises():
    mismatch(pad_across_processes, torch.ones(2 + RANK, 2 + RANK), {0: "2]", 1: "3]"}, dim=0)


@checks.add
def pad_difference_along_dim_allowed():
    padded = pad_across_processes(torch.ones(2 + RANK, 3), dim=0)
    assert padded.shape == (3, 3), padded.shape


@checks.add
def matching_inputs_still_work():
    assert gather(torch.tensor([RANK])).tolist() == [0, 1]
    assert reduce(torch.tensor([RANK + 1.0]), "sum").tolist() == [3.0]
    assert broadcast(torch.tensor([RANK]), from_process=1).tolist() == [1]


def operation_mismatch(calls):
    """Rank r runs ``calls[r] = (zero-argument callable, expected text, line)``; every rank
    must raise DistributedOperationException naming each rank's operation and call site."""
    try:
        calls[RANK][0]()
    except DistributedOperationException as error:
        text = str(error)
        for rank, (_, shown, line) in enumerate(calls):
            expected = f"process {rank}: {shown}"
            found = next((ln for ln in text.splitlines() if expected in ln), None)
            assert found is not None, f"{expected!r} missing from:\n{text}"
            assert found.endswith(f" at {__file__}:{line}"), f"call site {line} not in {found!r}"
        return
    raise AssertionError("the mismatched operations did not raise DistributedOperationException")


def line():
    """The caller's line number (each operation below sits on the line it is declared)."""
    return sys._getframe(1).f_lineno


@checks.add
def gather_vs_reduce_raises():
    x = torch.ones(4)
    operation_mismatch(
        [
            (lambda: gather(x), "gather(float32[4])", line()),
            (lambda: reduce(x), "reduce(float32[4])", line()),
        ]
    )


@checks.add
def gather_vs_barrier_raises():
    x = torch.ones(4)
    operation_mismatch(
        [
            (lambda: gather(x), "gather(float32[4])", line()),
            (lambda: state.wait_for_everyone(), "wait_for_everyone(barrier)", line()),
        ]
    )


@checks.add
def gather_object_vs_broadcast_raises():
    x = torch.ones(2)
    operation_mismatch(
        [
            (lambda: gather_object([1]), "gather_object()", line()),
            (lambda: broadcast(x), "broadcast(float32[2])", line()),
        ]
    )


@checks.add
def barrier_and_object_collectives_still_work():
    state.wait_for_everyone()
    assert gather_object([RANK]) == [0, 1]
    assert broadcast_object_list([RANK]) == [0]


checks.run(RANK)
dist.destroy_process_group()
