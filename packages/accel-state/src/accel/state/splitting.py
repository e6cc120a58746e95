"""Cutting a batch of inputs into one contiguous share per process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch

SUPPORTED = "list, tuple, torch.Tensor, a dict of those, or a dataset with len() and select()"


def share_bounds(length: int, process_index: int, num_processes: int) -> tuple[int, int]:
    """Start and end of ``process_index``'s share of ``length`` items; earlier shares are larger.

    Example:
        >>> [share_bounds(5, i, 2) for i in range(2)]
        [(0, 3), (3, 5)]
    """
    per_process, extras = divmod(length, num_processes)
    start = process_index * per_process + min(process_index, extras)
    end = start + per_process + (1 if process_index < extras else 0)
    return start, end


def _length(inputs: Any) -> int:
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("split_between_processes got an empty dict; nothing to split")
        lengths = {key: _length(value) for key, value in inputs.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
            raise ValueError(
                f"split_between_processes needs every value of a dict to have the same length; "
                f"got {detail}"
            )
        return next(iter(lengths.values()))
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ValueError("split_between_processes cannot split a 0-dimensional tensor")
        return inputs.shape[0]
    if isinstance(inputs, (list, tuple)) or _is_dataset(inputs):
        return len(inputs)
    raise TypeError(
        f"split_between_processes cannot split a {type(inputs).__name__}; expected {SUPPORTED}"
    )


def _is_dataset(inputs: Any) -> bool:
    return hasattr(inputs, "select") and hasattr(inputs, "__len__")


def _take(inputs: Any, start: int, end: int, padded_length: int | None) -> Any:
    if isinstance(inputs, Mapping):
        shares = {key: _take(value, start, end, padded_length) for key, value in inputs.items()}
        try:
            return cast(Any, type(inputs))(shares)
        except TypeError:
            return shares
    missing = 0 if padded_length is None else padded_length - (end - start)
    if isinstance(inputs, torch.Tensor):
        part = inputs[start:end]
        if missing <= 0:
            return part
        return torch.cat([part, inputs[-1:].expand(missing, *inputs.shape[1:])])
    if isinstance(inputs, (list, tuple)):
        part = inputs[start:end]
        return part if missing <= 0 else type(part)([*part, *[inputs[-1]] * missing])
    indices = list(range(start, end))
    if padded_length is not None:
        indices += [len(inputs) - 1] * (padded_length - len(indices))
    return inputs.select(indices)


def split_for_process(
    inputs: Any, process_index: int, num_processes: int, apply_padding: bool = False
) -> Any:
    """The share of ``inputs`` that belongs to ``process_index`` out of ``num_processes``.

    Shares are contiguous and differ in length by at most one. With ``apply_padding`` every
    share is as long as the first, filled up by repeating the last element of ``inputs``.
    The input itself is never modified.

    Example:
        >>> split_for_process(["A", "B", "C"], 1, 2, apply_padding=True)
        ['C', 'C']
    """
    length = _length(inputs)
    if apply_padding and length == 0:
        raise ValueError("split_between_processes(apply_padding=True) needs at least one element")
    start, end = share_bounds(length, process_index, num_processes)
    padded_length = -(-length // num_processes) if apply_padding else None
    return _take(inputs, start, end, padded_length)
