"""accel.state under a real 2-process torchrun job (gloo, CPU): one group, roles, coordination.

Run through ``tests-integration/launching.py``; writes ``rank<N>.json`` into ``ACCEL_IT_OUT``.
The process group is created with ``InitProcessGroupKwargs(timeout=97 s)``, a value no default
has, so the test can see it was honoured (and a mismatched collective fails within 97 s).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from _harness import Checks, refused

from accel.state import (
    DistributedType,
    InitProcessGroupKwargs,
    PartialState,
    reset_state,
)

TIMEOUT = timedelta(seconds=97)
RANK = int(os.environ["RANK"])
OUT = Path(os.environ["ACCEL_IT_OUT"])
checks = Checks()
state: PartialState | None = None


def everyone(value):
    """``value`` from every rank, in rank order (a raw torch collective, independent of accel)."""
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


@checks.add
def init_with_timeout_kwargs():
    global state
    state = PartialState(**InitProcessGroupKwargs(timeout=TIMEOUT).to_kwargs())
    assert state.initialized


@checks.add
def one_gloo_group_of_two():
    assert dist.is_initialized(), "PartialState did not start a process group"
    assert dist.get_world_size() == 2, dist.get_world_size()
    assert dist.get_backend() == "gloo", dist.get_backend()
    assert state.num_processes == 2, state.num_processes
    assert state.process_index == RANK == dist.get_rank(), (state.process_index, RANK)
    assert state.local_process_index == int(os.environ["LOCAL_RANK"])
    assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
    assert state.backend == "gloo", state.backend
    assert state.device == torch.device("cpu"), state.device
    assert state.use_distributed


@checks.add
def distinct_process_indices():
    assert everyone(state.process_index) == [0, 1]


@checks.add
def all_reduce_sums_both_ranks():
    value = torch.tensor([float(RANK + 1)])
    dist.all_reduce(value)
    assert value.item() == 3.0, value


@checks.add
def role_flags():
    expected = {
        "is_main_process": RANK == 0,
        "is_last_process": RANK == 1,
        "is_local_main_process": RANK == 0,
    }
    actual = {name: getattr(state, name) for name in expected}
    assert actual == expected, actual
    assert everyone(actual["is_main_process"]) == [True, False]


@checks.add
def init_timeout_honoured():
    group = dist.distributed_c10d._get_default_group()
    timeout = group._get_backend(torch.device("cpu")).options._timeout
    assert timeout == TIMEOUT, f"process group timeout is {timeout}, expected {TIMEOUT}"


@checks.add
def wait_for_everyone_blocks():
    if RANK == 1:
        time.sleep(0.5)
    (OUT / f"arrived{RANK}").write_text("here")
    state.wait_for_everyone()
    assert (OUT / "arrived0").exists() and (OUT / "arrived1").exists()


def _goes_first(context, marker: Path, first: bool):
    with context():
        if first:
            time.sleep(0.5)  # the other process would get ahead if it were not held back
            marker.write_text(str(time.time()))
        else:
            assert marker.exists(), "entered before the first process finished its block"
    state.wait_for_everyone()


@checks.add
def main_process_first_order():
    _goes_first(state.main_process_first, OUT / "main_first", state.is_main_process)


@checks.add
def local_main_process_first_order():
    _goes_first(state.local_main_process_first, OUT / "local_first", state.is_local_main_process)


@checks.add
def main_process_first_releases_others_on_error():
    failed = False
    try:
        with state.main_process_first():
            if state.is_main_process:
                raise RuntimeError("main fails inside the block")
    except RuntimeError:
        failed = True
    assert failed == state.is_main_process
    state.wait_for_everyone()


def _run_decorated(decorate):
    calls = []

    def function(value):
        calls.append(value)
        return f"ran on {RANK} with {value}"

    result = decorate(function)("x")
    return result, calls


def _only_on(decorate, rank):
    result, calls = _run_decorated(decorate)
    if rank == RANK:
        assert result == f"ran on {RANK} with x" and calls == ["x"], (result, calls)
    else:
        assert result is None and calls == [], (result, calls)
    assert everyone(result is not None) == [rank == 0, rank == 1]


@checks.add
def on_main_process_runs_on_rank0_only():
    _only_on(state.on_main_process, 0)


@checks.add
def on_local_main_process_runs_on_rank0_only():
    _only_on(state.on_local_main_process, 0)


@checks.add
def on_last_process_runs_on_rank1_only():
    _only_on(state.on_last_process, 1)


@checks.add
def on_process_1_runs_on_rank1_only():
    _only_on(state.on_process(process_index=1), 1)
    _only_on(lambda function: state.on_process(function, process_index=1), 1)


@checks.add
def on_process_0_runs_on_rank0_only():
    _only_on(state.on_process(process_index=0), 0)


@checks.add
def on_local_process_1_runs_on_rank1_only():
    _only_on(state.on_local_process(local_process_index=1), 1)


@checks.add
def on_process_out_of_range_raises():
    refused(
        lambda: state.on_process(lambda: None, process_index=2),
        "2",
        accepted="on_process(process_index=2) with 2 processes did not raise",
    )


def _split(inputs, apply_padding=False):
    with state.split_between_processes(inputs, apply_padding=apply_padding) as share:
        return share


def _expect(actual, by_rank):
    expected = by_rank[RANK]
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual, expected), (
            actual,
            expected,
        )
    else:
        assert type(actual) is type(expected) and actual == expected, (actual, expected)


@checks.add
def split_list_spec_example():
    _expect(_split(["A", "B", "C"]), {0: ["A", "B"], 1: ["C"]})


@checks.add
def split_list_padded_spec_example():
    _expect(_split(["A", "B", "C"], apply_padding=True), {0: ["A", "B"], 1: ["C", "C"]})


@checks.add
def split_tuple():
    _expect(_split(("A", "B", "C", "D")), {0: ("A", "B"), 1: ("C", "D")})
    _expect(_split(("A", "B", "C"), apply_padding=True), {0: ("A", "B"), 1: ("C", "C")})


@checks.add
def split_tensor():
    _expect(_split(torch.arange(5)), {0: torch.arange(3), 1: torch.tensor([3, 4])})
    rows = torch.arange(10).view(5, 2)
    _expect(_split(rows), {0: rows[:3], 1: rows[3:]})


@checks.add
def split_tensor_padded():
    _expect(
        _split(torch.arange(5), apply_padding=True),
        {0: torch.arange(3), 1: torch.tensor([3, 4, 4])},
    )
    rows = torch.arange(10).view(5, 2)
    _expect(
        _split(rows, apply_padding=True),
        {0: rows[:3], 1: torch.tensor([[6, 7], [8, 9], [8, 9]])},
    )


@checks.add
def split_dict():
    inputs = {"text": ["a", "b", "c"], "ids": torch.tensor([10, 11, 12])}
    share = _split(inputs)
    expected = {0: (["a", "b"], [10, 11]), 1: (["c"], [12])}[RANK]
    assert (share["text"], share["ids"].tolist()) == expected, share
    assert inputs["text"] == ["a", "b", "c"], "split_between_processes modified its input"


@checks.add
def split_dict_padded():
    share = _split({"text": ["a", "b", "c"], "ids": torch.tensor([10, 11, 12])}, True)
    expected = {0: (["a", "b"], [10, 11]), 1: (["c", "c"], [12, 12])}[RANK]
    assert (share["text"], share["ids"].tolist()) == expected, share


@checks.add
def print_on_main_process_only():
    state.print(f"ACCEL-IT-PRINT from rank {RANK}")
    sys.stdout.flush()
    state.wait_for_everyone()


@checks.add
def reset_state_then_adopt_group():
    global state
    group = dist.distributed_c10d._get_default_group()
    reset_state()
    assert PartialState._shared_state == {}, "reset_state kept the shared state"
    assert dist.is_initialized(), "reset_state() destroyed the process group"
    state = PartialState()
    assert dist.distributed_c10d._get_default_group() is group, "a new group was created"
    assert (state.num_processes, state.process_index) == (2, RANK)
    assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
    assert state.backend == "gloo" and state.device == torch.device("cpu")
    value = torch.tensor([float(RANK + 1)])
    dist.all_reduce(value)
    assert value.item() == 3.0
    state.wait_for_everyone()


checks.run(RANK)
if dist.is_initialized():
    dist.destroy_process_group()
