"""Side-by-side benchmark of accel.ops collectives, real Accelerate and raw torch.distributed.

Run it under torchrun with two processes (``run_all.py`` does this for you)::

    OMP_NUM_THREADS=1 uv run python -m torch.distributed.run --nproc_per_node 2 \\
        --master_port 29533 tools/bench/collectives.py [--quick | --smoke]

Every process creates ``accel.state.PartialState(cpu=True)`` (which starts the gloo group)
and then Accelerate's ``PartialState(cpu=True)``, which adopts that group, so both libraries
talk over the same connection. Before anything is timed, each operation's accel result is
checked against Accelerate's (and raw torch.distributed's) result, so a wrong result is never
benchmarked. Timing: warm-up calls, then rounds in which each implementation in turn runs a
block of calls after a barrier; every call is timed on its own, and the reported number is
the median per-call time, taking the slowest process. Rank 0 prints the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import accelerate
import accelerate.utils as acc_ops
import torch
import torch.distributed as dist

import accel.ops as accel_ops
from accel.state import PartialState

NESTED_TENSORS = 100
LARGE_NUMEL = 4 * 1024 * 1024
# One small tensor takes a fraction of a millisecond: its blocks run this many times more
# calls, so its medians rest on as many samples as the noise of a shared machine needs.
SMALL_BLOCK_SCALE = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line: ``--quick`` for a smoke run, or explicit iteration counts.

    Example:
        >>> parse_args(["--quick"]).rounds
        1
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    parser.add_argument("--smoke", action="store_true", help="fewest iterations (test suite)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per impl")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of timed blocks")
    parser.add_argument("--block", type=int, default=None, help="timed calls per block")
    args = parser.parse_args(argv)
    defaults = (1, 1, 1) if args.smoke else (1, 1, 2) if args.quick else (3, 5, 6)
    for name, value in zip(("warmup", "rounds", "block"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def setup_states() -> tuple[Any, Any]:
    """Create accel's state (starting gloo), then Accelerate's, and check Accelerate sees 2 CPUs.

    Example:
        >>> ours, theirs = setup_states()  # doctest: +SKIP
    """
    ours = PartialState(cpu=True)
    theirs = accelerate.PartialState(cpu=True)
    multi_cpu = accelerate.utils.DistributedType.MULTI_CPU
    if theirs.num_processes != ours.num_processes or theirs.distributed_type != multi_cpu:
        accelerate.PartialState._reset_state()
        os.environ["ACCELERATE_USE_CPU"] = "1"
        theirs = accelerate.PartialState(cpu=True)
    assert ours.num_processes == 2, f"run with 2 processes, got {ours.num_processes}"
    assert theirs.num_processes == 2, f"Accelerate sees {theirs.num_processes} processes"
    assert theirs.distributed_type == multi_cpu, theirs.distributed_type
    assert theirs.process_index == ours.process_index
    return ours, theirs


def nested_structure(rank: int) -> dict[str, Any]:
    """A nested dict of ``NESTED_TENSORS`` small tensors: (4,) float32 plus a few (4,) int64.

    Values depend on ``rank`` so gathers and reductions are checkable.

    Example:
        >>> s = nested_structure(0)
        >>> len(leaves(s)), s["block0"]["w0"].shape
        (100, torch.Size([4]))
    """
    out: dict[str, Any] = {}
    for i in range(NESTED_TENSORS):
        block = out.setdefault(f"block{i // 10}", {})
        if i % 20 == 19:
            block[f"ids{i % 10}"] = torch.arange(4, dtype=torch.int64) + 100 * rank + i
        else:
            block[f"w{i % 10}"] = torch.full((4,), float(i), dtype=torch.float32) + rank
    return out


def ragged_structure(rank: int) -> dict[str, Any]:
    """Like :func:`nested_structure` but dim 0 is ``3 + rank`` (so rank 0's tensors get padded).

    Example:
        >>> ragged_structure(1)["block0"]["t0"].shape
        torch.Size([4, 2])
    """
    out: dict[str, Any] = {}
    for i in range(NESTED_TENSORS):
        block = out.setdefault(f"block{i // 10}", {})
        dtype = torch.int64 if i % 20 == 19 else torch.float32
        block[f"t{i % 10}"] = torch.full((3 + rank, 2), i + 10 * rank, dtype=dtype)
    return out


def leaves(data: Any) -> list[torch.Tensor]:
    """The tensors of a nested dict, in insertion order.

    Example:
        >>> leaves({"a": {"b": torch.ones(1)}})
        [tensor([1.])]
    """
    if isinstance(data, torch.Tensor):
        return [data]
    return [t for value in data.values() for t in leaves(value)]


def clone(data: Any) -> Any:
    """A deep copy of a nested dict of tensors.

    Example:
        >>> clone({"a": torch.ones(1)})["a"]
        tensor([1.])
    """
    if isinstance(data, torch.Tensor):
        return data.clone()
    return {key: clone(value) for key, value in data.items()}


def packed_buffers(data: Any) -> list[torch.Tensor]:
    """The leaves of ``data`` concatenated into one flat buffer per dtype (first-seen order).

    Example:
        >>> [b.dtype for b in packed_buffers({"a": torch.ones(1), "b": torch.arange(2)})]
        [torch.float32, torch.int64]
    """
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in leaves(data):
        groups.setdefault(tensor.dtype, []).append(tensor.reshape(-1))
    return [torch.cat(group) for group in groups.values()]


def assert_same(name: str, ours: Any, theirs: Any) -> None:
    """Assert two nested results have equal leaves (same dtype, shape and values).

    Example:
        >>> assert_same("x", {"a": torch.ones(2)}, {"a": torch.ones(2)})
    """
    a, b = leaves(ours), leaves(theirs)
    assert len(a) == len(b), f"{name}: {len(a)} vs {len(b)} tensors"
    for x, y in zip(a, b):
        assert x.dtype == y.dtype, f"{name}: dtype {x.dtype} vs {y.dtype}"
        assert x.shape == y.shape, f"{name}: shape {tuple(x.shape)} vs {tuple(y.shape)}"
        assert torch.equal(x, y), f"{name}: values differ"


def time_calls(
    impls: dict[str, Callable[[], Any]],
    warmup: int,
    rounds: int,
    block: int,
    cpu: dict[str, float] | None = None,
) -> dict[str, float]:
    """Median per-call milliseconds of each implementation (slowest process).

    Implementations alternate block by block so drift hits them all alike; a barrier precedes
    every block. Given a ``cpu`` dict, also fills it with the median main-thread CPU time per
    call (``time.thread_time``): what the call itself costs, steadier than the wall clock
    when the collective's latency and a busy machine's noise dominate.

    Example:
        >>> time_calls({"accel": lambda: None}, 1, 1, 1)  # doctest: +SKIP
        {'accel': 0.001}
    """
    for fn in impls.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in impls}
    cpu_samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            dist.barrier()
            for _ in range(block):
                start, start_cpu = time.perf_counter(), time.thread_time()
                fn()
                cpu_samples[name].append(time.thread_time() - start_cpu)
                samples[name].append(time.perf_counter() - start)
    medians = torch.tensor(
        [statistics.median(found[name]) * 1e3 for found in (samples, cpu_samples) for name in impls]
    )
    dist.all_reduce(medians, op=dist.ReduceOp.MAX)
    values = medians.tolist()
    if cpu is not None:
        cpu.update(zip(impls, values[len(impls) :]))
    return dict(zip(impls, values[: len(impls)]))


def nested_cases(rank: int) -> list[tuple[str, dict[str, Callable[[], Any]], float]]:
    """The nested-structure operations: (label, {impl: call}, target speed-up vs Accelerate).

    Each case's results are checked equal across implementations before it is returned.

    Example:
        >>> cases = nested_cases(0)  # doctest: +SKIP
    """
    data = nested_structure(rank)
    ragged = ragged_structure(rank)
    cases = []

    # "raw": the floor -- the same data already packed into one buffer per dtype, one
    # torch.distributed call per buffer and no packing/unpacking.
    packed = packed_buffers(data)
    world = dist.get_world_size()

    def raw_gather() -> list[torch.Tensor]:
        outs = []
        for flat in packed:
            out = flat.new_empty((world * flat.numel(),))
            dist.all_gather_into_tensor(out, flat)
            outs.append(out)
        return outs

    def raw_sizes() -> torch.Tensor:
        sizes = torch.tensor([t.shape[0] for t in leaves(ragged)], dtype=torch.int64)
        dist.all_reduce(sizes, op=dist.ReduceOp.MAX)
        return sizes

    def raw_reduce() -> list[torch.Tensor]:
        outs = [flat.clone() for flat in packed]
        for out in outs:
            dist.all_reduce(out)
        return outs

    def raw_broadcast() -> list[torch.Tensor]:
        for flat in packed:
            dist.broadcast(flat, src=0)
        return packed

    got, want = accel_ops.gather(data), acc_ops.gather(data)
    assert_same("gather", got, want)
    assert_same("gather inputs untouched", data, nested_structure(rank))
    first = [leaves(nested_structure(r))[0] for r in range(2)]
    assert torch.equal(leaves(got)[0], torch.cat(first))
    cases.append(
        (
            "gather nested (100 tensors)",
            {
                "accel": lambda: accel_ops.gather(data),
                "accelerate": lambda: acc_ops.gather(data),
                "raw": raw_gather,
            },
            20.0,
        )
    )

    got = accel_ops.pad_across_processes(ragged)
    want = acc_ops.pad_across_processes(ragged)
    assert_same("pad_across_processes", got, want)
    assert leaves(got)[0].shape[0] == 4
    cases.append(
        (
            "pad_across_processes nested (100)",
            {
                "accel": lambda: accel_ops.pad_across_processes(ragged),
                "accelerate": lambda: acc_ops.pad_across_processes(ragged),
                "raw": raw_sizes,
            },
            20.0,
        )
    )

    got = accel_ops.reduce(data, reduction="sum")
    want = acc_ops.reduce(data, reduction="sum")
    assert_same("reduce", got, want)
    assert_same("reduce inputs untouched", data, nested_structure(rank))
    assert torch.equal(leaves(got)[0], first[0] + first[1])
    cases.append(
        (
            "reduce(sum) nested (100 tensors)",
            {
                "accel": lambda: accel_ops.reduce(data, reduction="sum"),
                "accelerate": lambda: acc_ops.reduce(data, reduction="sum"),
                "raw": raw_reduce,
            },
            20.0,
        )
    )

    ours, theirs = clone(data), clone(data)
    got, want = accel_ops.broadcast(ours), acc_ops.broadcast(theirs)
    assert_same("broadcast", got, want)
    assert_same("broadcast in place", ours, nested_structure(0))
    assert_same("broadcast in place (Accelerate)", theirs, nested_structure(0))
    cases.append(
        (
            "broadcast nested (100 tensors)",
            {
                "accel": lambda: accel_ops.broadcast(ours),
                "accelerate": lambda: acc_ops.broadcast(theirs),
                "raw": raw_broadcast,
            },
            20.0,
        )
    )
    return cases


def small_cases(rank: int) -> list[tuple[str, dict[str, Callable[[], Any]], float]]:
    """One small tensor per call, as a training or eval loop does: (label, {impl: call}, target).

    A scalar loss, a (8,) tensor and (64, 10) logits gathered; a scalar loss reduced; a (8,)
    tensor broadcast. "raw" is the bare torch.distributed call (``all_gather_into_tensor``,
    clone + ``all_reduce``, ``broadcast``). Results are checked equal before timing.

    Example:
        >>> cases = small_cases(0)  # doctest: +SKIP
    """
    world = dist.get_world_size()
    cases = []
    for label, shape in (("scalar", ()), ("(8,)", (8,)), ("(64, 10) logits", (64, 10))):
        numel = max(1, int(torch.Size(shape).numel()))
        value = (torch.arange(numel, dtype=torch.float32) + 1000 * rank).reshape(shape)

        def raw_gather(value: torch.Tensor = value) -> torch.Tensor:
            flat = value.reshape(-1)
            out = flat.new_empty((world * flat.numel(),))
            dist.all_gather_into_tensor(out, flat)
            rows = value.shape[0] if value.dim() else 1
            return out.view(world * rows, *value.shape[1:])

        got, want, raw = accel_ops.gather(value), acc_ops.gather(value), raw_gather()
        assert_same(f"gather {label}", got, want)
        assert_same(f"gather {label} vs raw", got, raw)
        cases.append(
            (
                f"gather one {label} tensor",
                {
                    "accel": lambda value=value: accel_ops.gather(value),
                    "accelerate": lambda value=value: acc_ops.gather(value),
                    "raw": raw_gather,
                },
                1.0,
            )
        )

    loss = torch.tensor(0.25 + rank, dtype=torch.float32)

    def raw_reduce() -> torch.Tensor:
        out = loss.clone()
        dist.all_reduce(out)
        return out.div_(world)

    got, want, raw = accel_ops.reduce(loss), acc_ops.reduce(loss), raw_reduce()
    assert_same("reduce scalar", got, want)
    assert_same("reduce scalar vs raw", got, raw)
    assert_same("reduce scalar input untouched", loss, torch.tensor(0.25 + rank))
    cases.append(
        (
            "reduce(mean) one scalar",
            {
                "accel": lambda: accel_ops.reduce(loss),
                "accelerate": lambda: acc_ops.reduce(loss),
                "raw": raw_reduce,
            },
            1.0,
        )
    )

    ours, theirs, raw = (torch.arange(8.0) + 10 * rank for _ in range(3))
    got, want = accel_ops.broadcast(ours), acc_ops.broadcast(theirs)
    dist.broadcast(raw, src=0)
    assert_same("broadcast (8,)", got, want)
    assert_same("broadcast (8,) vs raw", got, raw)
    assert_same("broadcast (8,) in place", ours, torch.arange(8.0))
    cases.append(
        (
            "broadcast one (8,) tensor",
            {
                "accel": lambda: accel_ops.broadcast(ours),
                "accelerate": lambda: acc_ops.broadcast(theirs),
                "raw": lambda: dist.broadcast(raw, src=0),
            },
            1.0,
        )
    )
    return cases


def large_cases(rank: int) -> list[tuple[str, dict[str, Callable[[], Any]], float]]:
    """The one-big-tensor operations: (label, {impl: call}, max accel/raw ratio).

    Example:
        >>> cases = large_cases(0)  # doctest: +SKIP
    """
    world = dist.get_world_size()
    big = torch.arange(LARGE_NUMEL, dtype=torch.float32) + rank * LARGE_NUMEL
    pristine = big.clone()
    inplace = big.clone()

    def raw_gather() -> torch.Tensor:
        out = big.new_empty((world * big.numel(),))
        dist.all_gather_into_tensor(out, big)
        return out

    def raw_reduce_clone() -> torch.Tensor:
        out = big.clone()
        dist.all_reduce(out)
        return out

    def raw_reduce_inplace() -> torch.Tensor:
        dist.all_reduce(inplace)
        return inplace

    got, want, raw = accel_ops.gather(big), acc_ops.gather(big), raw_gather()
    assert_same("gather 4M", got, want)
    assert_same("gather 4M vs raw", got, raw)
    got, want, raw = accel_ops.reduce(big, "sum"), acc_ops.reduce(big, "sum"), raw_reduce_clone()
    assert_same("reduce 4M", got, want)
    assert_same("reduce 4M vs raw", got, raw)
    assert_same("large inputs untouched", big, pristine)
    return [
        (
            "gather 4M float32",
            {
                "accel": lambda: accel_ops.gather(big),
                "accelerate": lambda: acc_ops.gather(big),
                "raw": raw_gather,
            },
            1.05,
        ),
        (
            "reduce(sum) 4M float32 (raw: clone)",
            {
                "accel": lambda: accel_ops.reduce(big, "sum"),
                "accelerate": lambda: acc_ops.reduce(big, "sum"),
                "raw": raw_reduce_clone,
            },
            1.05,
        ),
        (
            "reduce(sum) 4M float32 (raw: in-place)",
            {"accel": lambda: accel_ops.reduce(big, "sum"), "raw": raw_reduce_inplace},
            1.05,
        ),
    ]


def clone_cost() -> float:
    """Median ms of cloning the 4M-float32 tensor: what a non-mutating reduce adds to in-place.

    Example:
        >>> clone_cost() > 0  # doctest: +SKIP
        True
    """
    big = torch.ones(LARGE_NUMEL)
    return time_calls({"raw": big.clone}, 3, 5, 6)["raw"]


def format_row(label: str, times: dict[str, float], target: float, large: bool) -> str:
    """One table row with the ratio and the target it is judged against.

    Example:
        >>> format_row("op", {"accel": 1.0, "accelerate": 30.0}, 20.0, False).split("|")[4].strip()
        'accelerate/accel = 30.0x'
    """
    cells = [f"{label:<38}"]
    for impl in ("accel", "accelerate", "raw"):
        cells.append(f"{times[impl]:>10.3f}" if impl in times else f"{'-':>10}")
    if large:
        ratio = times["accel"] / times["raw"]
        verdict = "ok" if ratio <= target else "MISSED"
        cells.append(f"accel/raw = {ratio:.3f}")
        cells.append(f"target <= {target:.2f} {verdict}")
    else:
        ratio = times["accelerate"] / times["accel"]
        verdict = "ok" if ratio >= target else "MISSED"
        cells.append(f"accelerate/accel = {ratio:.{1 if target >= 10 else 2}f}x")
        cells.append(f"target >= {target:g}x {verdict}")
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> None:
    """Run every case, check results, time them and print the table on rank 0.

    Example:
        >>> main(["--quick"])  # doctest: +SKIP
    """
    args = parse_args(argv)
    ours, _ = setup_states()
    rank = ours.process_index
    rows = []
    try:
        groups = (
            (False, 1, nested_cases(rank)),
            (False, SMALL_BLOCK_SCALE, small_cases(rank)),
            (True, 1, large_cases(rank)),
        )
        cpu_rows = []
        for large, scale, cases in groups:
            for label, impls, target in cases:
                cpu: dict[str, float] = {}
                times = time_calls(impls, args.warmup, args.rounds, args.block * scale, cpu)
                rows.append(format_row(label, times, target, large))
                if scale == SMALL_BLOCK_SCALE:
                    cpu_rows.append(format_row(f"cpu: {label}", cpu, target, large))
        clone_ms = clone_cost()
        if rank == 0:
            header = " | ".join(
                [
                    f"{'operation':<38}",
                    f"{'accel ms':>10}",
                    f"{'accelerate ms':>10}",
                    f"{'raw ms':>10}",
                    "ratio",
                    "target",
                ]
            )
            threads = os.environ.get("OMP_NUM_THREADS", "unset")
            print(
                f"\ncollectives: 2 processes, gloo on CPU, OMP_NUM_THREADS={threads}, "
                f"torch {torch.__version__}, accelerate {accelerate.__version__}; "
                f"median per call over {args.rounds}x{args.block} calls "
                f"({args.rounds}x{args.block * SMALL_BLOCK_SCALE} for one small tensor; "
                f"after {args.warmup} warm-up), slowest process"
            )
            print(header)
            print("-" * len(header))
            for row in rows:
                print(row, flush=True)
            print(
                "main-thread CPU ms per call (time.thread_time), the one-small-tensor calls above:"
            )
            for row in cpu_rows:
                print(row, flush=True)
            print(
                f"(for reference: clone of the 4M float32 tensor alone = {clone_ms:.3f} ms; "
                "reduce must not modify its input, so it pays this on top of in-place)"
            )
    finally:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
