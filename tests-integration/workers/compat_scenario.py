"""One 2-process scenario run against either accel or the real Accelerate, for comparison.

``python -m torch.distributed.run --nproc_per_node 2 compat_scenario.py accel|accelerate``.
Each step's result is recorded in a backend-neutral JSON form (see ``encode``); the test
compares the two runs rank by rank. Only behaviour both libraries document is exercised
(e.g. no ``reduce(scale=...)``, which Accelerate honours only on XLA).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from _harness import Checks

BACKEND = sys.argv[1]
if BACKEND == "accelerate":
    from accelerate import PartialState
    from accelerate.utils import (
        broadcast,
        broadcast_object_list,
        gather,
        gather_object,
        pad_across_processes,
        reduce,
    )
elif BACKEND == "accel":
    from accel.ops import (
        broadcast,
        broadcast_object_list,
        gather,
        gather_object,
        pad_across_processes,
        reduce,
    )
    from accel.state import PartialState
else:
    raise SystemExit(f"usage: compat_scenario.py accel|accelerate (got {BACKEND!r})")

RANK = int(os.environ["RANK"])
checks = Checks()
state = PartialState(cpu=True)


def encode(value):
    """A JSON form of nested tensors/containers that keeps dtypes, shapes and types."""
    if isinstance(value, torch.Tensor):
        return {
            "tensor": str(value.dtype),
            "shape": list(value.shape),
            "values": value.tolist(),
        }
    if isinstance(value, dict):
        return {
            "dict": type(value).__name__,
            "items": [[str(k), encode(v)] for k, v in value.items()],
        }
    if isinstance(value, (list, tuple)):
        return {"seq": type(value).__name__, "items": [encode(v) for v in value]}
    return value


def step(function):
    """Register ``function`` as a scenario step whose return value is recorded."""

    def run():
        checks.record(function.__name__, encode(function()))

    run.__name__ = function.__name__
    return checks.add(run)


@step
def state_info():
    return {
        "distributed_type": getattr(state.distributed_type, "value", str(state.distributed_type)),
        "backend": state.backend,
        "num_processes": state.num_processes,
        "process_index": state.process_index,
        "device": str(state.device),
        "torch_world_size": dist.get_world_size() if dist.is_initialized() else None,
    }


@step
def gather_1d():
    return gather(torch.tensor([RANK * 2.0, RANK * 2.0 + 1]))


@step
def gather_0d():
    return gather(torch.tensor(RANK + 0.5))


@step
def gather_nested():
    return gather({"a": torch.full((2, 3), RANK * 1.0), "b": [torch.tensor([RANK, 7])]})


@step
def reduce_sum():
    return reduce(torch.tensor([RANK + 1.0, 3.0]), "sum")


@step
def reduce_mean():
    return reduce({"x": torch.tensor([RANK + 1.0, 4.0 * RANK])})


@step
def reduce_none():
    return reduce(torch.tensor([RANK + 1.0]), "none")


@step
def reduce_max():
    return reduce(torch.tensor([RANK * 4.0 - 1, -RANK * 3.0]), "max")


@step
def pad_lengths():
    return pad_across_processes(torch.arange(1, 3 + 2 * RANK))


@step
def pad_dim1_first():
    return pad_across_processes(torch.ones(2, 1 + 2 * RANK), dim=1, pad_index=-1, pad_first=True)


@step
def pad_then_gather():
    return gather(pad_across_processes({"ids": torch.arange(2 + RANK)}))


@step
def gather_object_list():
    return gather_object([f"r{RANK}", RANK])


@step
def gather_object_dict():
    return gather_object({"rank": RANK})


@step
def broadcast_from_0():
    tensor = torch.full((3,), float(RANK))
    broadcast(tensor)
    return tensor


@step
def broadcast_from_1_nested():
    data = {"w": torch.full((2,), RANK * 1.5), "ids": [torch.tensor([RANK])]}
    broadcast(data, from_process=1)
    return data


@step
def broadcast_object_list_from_0():
    objects = [{"from": RANK}, f"rank{RANK}"]
    broadcast_object_list(objects)
    return objects


def _split(inputs, apply_padding=False):
    with state.split_between_processes(inputs, apply_padding=apply_padding) as share:
        return share


@step
def split_list():
    return _split(["A", "B", "C"])


@step
def split_list_padded():
    return _split(["A", "B", "C"], apply_padding=True)


@step
def split_tensor():
    return _split(torch.arange(5))


@step
def split_tensor_padded():
    return _split(torch.arange(5), apply_padding=True)


@step
def split_dict():
    return _split({"text": ["a", "b", "c"], "ids": torch.tensor([10, 11, 12])})


@step
def split_dict_padded():
    return _split({"text": ["a", "b", "c"], "ids": [1, 2, 3]}, apply_padding=True)


checks.run(RANK)
if dist.is_initialized():
    dist.destroy_process_group()
