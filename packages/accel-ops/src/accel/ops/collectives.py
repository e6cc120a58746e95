"""Collectives on nested structures of tensors: gather, reduce, broadcast, pad, and objects.

Each call packs the structure's tensors into one flat buffer per dtype and runs one
collective per buffer (see :mod:`accel.ops.buckets`), where Accelerate runs one per tensor.
With one process every operation returns its input (``reduce`` returns a copy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from accel.ops.buckets import from_wire, make_buckets
from accel.ops.consistency import check_consistent, describe
from accel.ops.fingerprint import layout_fingerprint
from accel.ops.shape_check import (
    all_gather_rows,
    checked_gather,
    fingerprint_probe,
    raise_on_mismatch,
)
from accel.ops.structures import recursively_apply
from accel.state import PartialState
from accel.state.operation_check import check_operation

_REDUCE_OPS = {
    "sum": dist.ReduceOp.SUM,
    "mean": dist.ReduceOp.SUM,
    "none": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}


def _leaves(data: Any, operation: str) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        return [data]
    found: list[torch.Tensor] = []

    def collect(tensor: torch.Tensor) -> None:
        found.append(tensor)

    collect.__name__ = f"accel.ops.{operation}"
    recursively_apply(collect, data, error_on_other_type=True)
    return found


def _rebuild(data: Any, results: list[Any]) -> Any:
    if isinstance(data, torch.Tensor):
        return results[0]
    remaining = iter(results)
    return recursively_apply(lambda _: next(remaining), data)


def _verify(
    state: PartialState,
    operation: str,
    data: Any,
    leaves: list[torch.Tensor],
    summary: Callable[[torch.Tensor], str] = describe,
    extra: Any = None,
) -> None:
    if state.debug:
        description = _description(data, summary, extra)
        check_consistent(operation, description, state.device.type, leaves, state.num_processes)


def _description(
    data: Any, summary: Callable[[torch.Tensor], str] = describe, extra: Any = None
) -> str:
    described = recursively_apply(summary, data)
    layout = described if isinstance(described, str) else repr(described)
    return layout if extra is None else f"{layout} {extra}"


def _check_source(from_process: Any, state: PartialState) -> None:
    if isinstance(from_process, bool) or not isinstance(from_process, int):
        raise TypeError(f"from_process={from_process!r} must be an int process index")
    if not 0 <= from_process < state.num_processes:
        raise ValueError(
            f"from_process={from_process} is out of range; this job has "
            f"{state.num_processes} processes, so valid values are 0..{state.num_processes - 1}"
        )


def _check_object_collectives(state: PartialState, operation: str) -> None:
    backend = state.collective_backend
    if backend is not None and not backend.supports_object_collectives:
        raise RuntimeError(
            f"{operation} cannot run with the {backend.name!r} collective backend "
            f"(distributed_type={state.distributed_type.value}): it cannot move pickled objects "
            "between processes; gather tensors with gather() instead (pad_across_processes "
            "first if their sizes differ)"
        )


def gather(tensor: Any) -> Any:
    """Gather tensors from every process and concatenate them along the first dimension.

    ``tensor`` is a tensor or a nested list/tuple/namedtuple/mapping of tensors, each with the
    same shape on every process (see :func:`pad_across_processes` otherwise). A 0-dim tensor
    comes back with shape ``(num_processes,)``. The structure keeps its type.

    Example:
        >>> from accel.ops import gather
        >>> out = gather({"loss": torch.tensor(0.5), "ids": torch.arange(2)})
        >>> out["ids"]  # with 1 process; with 2 it has 4 elements, process 0's first
        tensor([0, 1])
    """
    state = PartialState()
    if not state.use_distributed:
        return tensor
    leaves = _leaves(tensor, "gather")
    if state.debug:
        _verify(state, "gather", tensor, leaves)
    else:
        inline = checked_gather(state, leaves, lambda: _description(tensor))
        if inline is not None:
            return _rebuild(tensor, inline)
    count = state.num_processes
    results: list[Any] = [None] * len(leaves)
    for bucket in make_buckets(leaves):
        output = all_gather_rows(bucket.flat, count)
        for index, original, part in zip(bucket.indices, bucket.tensors, bucket.parts(output)):
            shape = original.shape if original.dim() else (1,)
            results[index] = from_wire(part, original.dtype).reshape(count * shape[0], *shape[1:])
    return _rebuild(tensor, results)


def reduce(tensor: Any, reduction: str = "mean", scale: float = 1.0) -> Any:
    """Reduce tensors element-wise across processes; returns new tensors, inputs untouched.

    ``reduction`` is ``"mean"``, ``"sum"``, ``"max"``, ``"min"`` or ``"none"`` (Accelerate's
    name for a plain sum). The result is multiplied by ``scale`` afterwards.

    Example:
        >>> from accel.ops import reduce
        >>> reduce(torch.tensor([1.0, 3.0]), reduction="sum")  # 1 process: a copy
        tensor([1., 3.])
    """
    if reduction not in _REDUCE_OPS:
        raise ValueError(
            f"reduction={reduction!r} is not supported; use one of {', '.join(_REDUCE_OPS)}"
        )
    state = PartialState()
    leaves = _leaves(tensor, "reduce")
    for leaf in leaves:
        if reduction == "mean" and not (leaf.is_floating_point() or leaf.is_complex()):
            raise TypeError(
                f"reduce(reduction='mean') needs floating-point tensors, got {leaf.dtype}; "
                "convert it (e.g. .float()) or use reduction='sum'"
            )
    if not state.use_distributed:
        results = [leaf.clone() if scale == 1.0 else leaf * scale for leaf in leaves]
        return _rebuild(tensor, results)
    _verify(state, "reduce", tensor, leaves)
    count = state.num_processes
    if len(leaves) == 1 and leaves[0].dtype != torch.bool:
        # one tensor (a loss, a metric): no bucket to build, reduce a contiguous copy
        buffer = leaves[0].clone(memory_format=torch.contiguous_format)
        _all_reduce(buffer, _REDUCE_OPS[reduction], reduction, count, scale)
        return _rebuild(tensor, [buffer])
    reduced: list[Any] = [None] * len(leaves)
    for bucket in make_buckets(leaves):
        buffer = bucket.flat.clone() if len(bucket.tensors) == 1 else bucket.flat
        op = _REDUCE_OPS[reduction]
        if bucket.dtype == torch.bool:
            op = dist.ReduceOp.MIN if reduction == "min" else dist.ReduceOp.MAX
        _all_reduce(buffer, op, reduction, count, scale)
        for index, view in zip(bucket.indices, bucket.views(buffer)):
            reduced[index] = view
    return _rebuild(tensor, reduced)


def _all_reduce(buffer: torch.Tensor, op: Any, reduction: str, count: int, scale: float) -> None:
    dist.all_reduce(buffer, op=op)
    if reduction == "mean":
        buffer.div_(count)
    if scale != 1.0:
        buffer.mul_(scale)


def broadcast(tensor: Any, from_process: int = 0) -> Any:
    """Copy process ``from_process``'s tensors into every other process's tensors, in place.

    Every process passes tensors of the same structure, shapes and dtypes; the same structure
    is returned, holding process ``from_process``'s values.

    Example:
        >>> from accel.ops import broadcast
        >>> broadcast({"w": torch.ones(2)})["w"]
        tensor([1., 1.])
    """
    state = PartialState()
    if isinstance(from_process, bool) or not isinstance(from_process, int) or from_process < 0:
        _check_source(from_process, state)
    if not state.use_distributed:
        return tensor
    _check_source(from_process, state)
    leaves = _leaves(tensor, "broadcast")
    _verify(state, "broadcast", tensor, leaves)
    if len(leaves) == 1:
        leaf = leaves[0]
        if leaf.dtype != torch.bool and leaf.is_contiguous():
            dist.broadcast(leaf, src=from_process)  # straight into the tensor
            return tensor
    sending = state.process_index == from_process
    # Receivers do not pack their own values (they are about to be overwritten): they
    # receive into an empty buffer and copy it back with one batched copy per bucket.
    for bucket in make_buckets(leaves, pack=sending):
        dist.broadcast(bucket.flat, src=from_process)
        if sending:
            continue
        if len(bucket.tensors) == 1:
            original = bucket.tensors[0]
            if bucket.flat.data_ptr() == original.data_ptr() and original.is_contiguous():
                continue  # received straight into the tensor
        # torch's stubs do not list its _foreach ops as exported, though they are public ops
        torch._foreach_copy_(bucket.tensors, bucket.views(bucket.flat))  # pyright: ignore[reportPrivateImportUsage]
    return tensor


def _pads(tensor: torch.Tensor, dim: int) -> bool:
    return not getattr(tensor, "is_nested", False) and -tensor.dim() <= dim < tensor.dim()


def pad_across_processes(
    tensor: Any, dim: int = 0, pad_index: int = 0, pad_first: bool = False
) -> Any:
    """Pad tensors along ``dim`` to the largest size any process has, so they can be gathered.

    One small collective exchanges every tensor's size at once. Tensors with fewer than
    ``dim + 1`` dimensions, and nested tensors, are returned unchanged.

    Example:
        >>> from accel.ops import pad_across_processes
        >>> pad_across_processes(torch.tensor([1, 2]))  # process 1 has 3 elements -> [1, 2, 0]
        tensor([1, 2])
    """
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim={dim!r} must be an int")
    state = PartialState()
    leaves = _leaves(tensor, "pad_across_processes")
    if not state.use_distributed:
        return tensor
    _verify(
        state,
        "pad_across_processes",
        tensor,
        leaves,
        summary=lambda t: describe(t, ignore_dim=dim if _pads(t, dim) else None),
    )
    padded = [leaf for leaf in leaves if _pads(leaf, dim)]
    # one all-reduce carries both the sizes to pad to and the layout check (see shape_check)
    fingerprint = layout_fingerprint(leaves, ignore_dim=dim)
    probe = fingerprint_probe(fingerprint, state.device, [leaf.shape[dim] for leaf in padded])
    dist.all_reduce(probe, op=dist.ReduceOp.MAX)
    reduced = probe.tolist()
    raise_on_mismatch(
        state,
        "pad_across_processes",
        reduced,
        lambda: _description(
            tensor, lambda t: describe(t, ignore_dim=dim if _pads(t, dim) else None)
        ),
    )
    if not padded:
        return tensor
    largest = iter(reduced[2:])
    results = []
    for leaf in leaves:
        if not _pads(leaf, dim):
            results.append(leaf)
            continue
        target = next(largest)
        axis = dim % leaf.dim()
        missing = target - leaf.shape[axis]
        if missing == 0:
            results.append(leaf)
            continue
        shape = list(leaf.shape)
        shape[axis] = target
        out = leaf.new_full(shape, pad_index)
        start = missing if pad_first else 0
        out.narrow(axis, start, leaf.shape[axis]).copy_(leaf)
        results.append(out)
    return _rebuild(tensor, results)


def gather_object(object: Any) -> Any:
    """Gather picklable objects from every process.

    A list or tuple comes back as one list of every process's elements, process 0's first;
    any other object as a list with one entry per process. With one process the object is
    returned as it is. A backend that cannot move objects (XLA) raises ``RuntimeError``, with
    one process too, so a script fails the same way on one device as on many.

    Example:
        >>> from accel.ops import gather_object
        >>> gather_object(["a"])  # 2 processes passing ["a"] and ["b"] -> ["a", "b"]
        ['a']
    """
    state = PartialState()
    _check_object_collectives(state, "gather_object")
    if not state.use_distributed:
        return object
    if state.debug:
        check_operation("gather_object", "", state.num_processes)
    everyone: list[Any] = [None] * state.num_processes
    dist.all_gather_object(everyone, object)
    if isinstance(object, (list, tuple)):
        return [item for part in everyone for item in part]
    return everyone


def broadcast_object_list(object_list: list[Any], from_process: int = 0) -> list[Any]:
    """Replace the items of ``object_list`` in place with process ``from_process``'s items.

    Every process passes a list of the same length; the list is also returned. Like
    :func:`gather_object`, raises ``RuntimeError`` on a backend that cannot move objects (XLA).

    Example:
        >>> from accel.ops import broadcast_object_list
        >>> broadcast_object_list([{"lr": 0.1}])
        [{'lr': 0.1}]
    """
    if not isinstance(object_list, list):
        raise TypeError(
            f"broadcast_object_list needs a list (it is filled in place), got "
            f"{type(object_list).__name__}"
        )
    state = PartialState()
    if isinstance(from_process, bool) or not isinstance(from_process, int) or from_process < 0:
        _check_source(from_process, state)
    _check_object_collectives(state, "broadcast_object_list")
    if not state.use_distributed:
        return object_list
    _check_source(from_process, state)
    if state.debug:
        description = f"list of {len(object_list)}, from process {from_process}"
        check_operation("broadcast_object_list", description, state.num_processes)
    dist.broadcast_object_list(object_list, src=from_process)
    return object_list
