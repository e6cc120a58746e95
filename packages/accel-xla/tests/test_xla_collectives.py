"""Collectives on XLA tensors: accel.ops with one XLA process, and XLA's process group.

Only one XLA CPU device works here (two time out in XLA's rendezvous), so data never moves
between processes in these tests. What they check: accel.ops' functions accept XLA tensors in
an XLA job and give the single-process answers, the object collectives refuse XLA with one
line, and torch.distributed's ``xla`` group (what accel.ops runs over with several processes)
accepts exactly the calls accel.ops makes, on the buffers accel.ops builds.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
from _xla_loops import job

from accel.ops import (
    broadcast,
    broadcast_object_list,
    gather,
    gather_object,
    pad_across_processes,
    reduce,
)
from accel.ops.buckets import make_buckets
from accel.state import DistributedType, PartialState
from accel.xla import XLA_BACKEND


def test_ops_round_trip_on_xla_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    with job(monkeypatch, xla=True):
        state = PartialState()
        assert state.distributed_type == DistributedType.XLA
        device = state.device
        data = {"loss": torch.tensor(0.5, device=device), "ids": torch.arange(3, device=device)}
        gathered = gather(data)
        assert gathered["ids"].device.type == "xla"
        assert gathered["ids"].cpu().tolist() == [0, 1, 2]
        summed = reduce(data["ids"].float(), reduction="sum", scale=2.0)
        assert summed.cpu().tolist() == [0.0, 2.0, 4.0]
        assert reduce(data["loss"], reduction="mean").item() == 0.5
        assert broadcast(data)["loss"].item() == 0.5
        padded = pad_across_processes(torch.ones(2, 3, device=device), dim=1)
        assert padded.shape == (2, 3)


def test_object_collectives_refuse_xla_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with job(monkeypatch, xla=True):
        for call in (lambda: gather_object(["a"]), lambda: broadcast_object_list([1])):
            with pytest.raises(RuntimeError) as caught:
                call()
            message = str(caught.value)
            assert "\n" not in message
            assert "with the 'xla' collective backend (distributed_type=XLA)" in message
            assert "gather tensors with gather() instead" in message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_xla_process_group_takes_the_calls_accel_ops_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    XLA_BACKEND.init_process_group(rank=0, world_size=1)
    try:
        assert dist.get_backend() == "xla" and dist.get_world_size() == 1
        device = XLA_BACKEND.device(0)
        tensors = [
            torch.arange(4, dtype=torch.float32, device=device),
            torch.ones(2, 2, device=device),
            torch.tensor([True, False], device=device),
        ]
        for bucket in make_buckets(tensors):
            output = bucket.flat.new_empty((1, bucket.flat.numel()))
            dist.all_gather_into_tensor(output, bucket.flat)  # gather
            assert torch.equal(output[0].cpu(), bucket.flat.cpu())
            for op in (dist.ReduceOp.SUM, dist.ReduceOp.MAX, dist.ReduceOp.MIN):  # reduce
                buffer = bucket.flat.clone()
                dist.all_reduce(buffer, op=op)
                assert torch.equal(buffer.cpu(), bucket.flat.cpu())
            received = bucket.flat.clone()
            dist.broadcast(received, src=0)  # broadcast
            assert torch.equal(received.cpu(), bucket.flat.cpu())
        sizes = torch.tensor([3, 5], dtype=torch.int64, device=device)
        dist.all_reduce(sizes, op=dist.ReduceOp.MAX)  # pad_across_processes' size exchange
        assert sizes.cpu().tolist() == [3, 5]
    finally:
        dist.destroy_process_group()
