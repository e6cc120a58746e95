"""Gathering across data-parallel groups only: the ranks of one tensor/context parallel group
hold the same batch, so ``gather_for_metrics`` keeps one copy per group.

With the mesh order ``dp_replicate, dp_shard, cp, sp, tp`` the non-data-parallel dimensions
are the innermost: global rank ``r`` belongs to data-parallel group ``r // non_dp_size`` and
is that group's first member when ``r % non_dp_size == 0``.

Example:
    >>> from accel.core.parallelism_config import ParallelismConfig
    >>> gather_data_parallel(torch.ones(2), ParallelismConfig(tp_size=2), False)  # doctest: +SKIP
    tensor([1., 1.])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from accel.ops import gather, gather_object, recursively_apply

if TYPE_CHECKING:
    from accel.core.parallelism_config import ParallelismConfig


def _first_of_each_group(tensor: torch.Tensor, world: int, copies: int) -> torch.Tensor:
    if tensor.dim() == 0 or tensor.shape[0] % world:
        raise ValueError(
            f"gather_for_metrics under tensor/context parallelism got a gathered tensor of shape "
            f"{tuple(tensor.shape)} that does not split into {world} equal per-process parts; "
            "pad the inputs with accelerator.pad_across_processes first"
        )
    per_rank = tensor.reshape(world, tensor.shape[0] // world, *tensor.shape[1:])
    return per_rank[::copies].reshape(-1, *tensor.shape[1:])


def gather_data_parallel(
    data: Any, config: ParallelismConfig, use_gather_object: bool = False
) -> Any:
    """Gather ``data`` from all processes and keep one copy per data-parallel group
    (``gather`` semantics for tensors, ``gather_object`` semantics for other objects).

    Example:
        >>> gather_data_parallel({"x": torch.ones(1)}, config)  # doctest: +SKIP
        {'x': tensor([1., 1.])}
    """
    copies = config.non_data_parallel_size
    world = config.total_size
    if use_gather_object:
        everyone = gather_object([data])
        kept = everyone[::copies]
        if isinstance(data, (list, tuple)):
            return [item for part in kept for item in part]
        return kept
    gathered = gather(data)
    return recursively_apply(lambda t: _first_of_each_group(t, world, copies), gathered)


def refuse_uneven_sequence_parallel_end(config: ParallelismConfig | None, remainder: int) -> None:
    """Raise when ``gather_for_metrics`` would drop the ``remainder`` repeated samples of a last
    batch under DeepSpeed Ulysses: its rows are chunks of sequences there, not samples.

    Example:
        >>> from accel.core.parallelism_config import ParallelismConfig
        >>> refuse_uneven_sequence_parallel_end(ParallelismConfig(sp_size=1), 3)  # no-op
        >>> refuse_uneven_sequence_parallel_end(ParallelismConfig(sp_size=2), 3)
        Traceback (most recent call last):
        ...
        ValueError: gather_for_metrics under sequence parallelism (sp_size=2): the last batch repeats samples to even out the processes (3 real ones), but each gathered row is one rank's chunk of a sequence, so they cannot be dropped by row; give the dataloader drop_last=True or a dataset size divisible by batch_size x num_processes
    """
    if config is None or not config.sp_enabled:
        return
    raise ValueError(
        f"gather_for_metrics under sequence parallelism (sp_size={config.sp_size}): the last "
        f"batch repeats samples to even out the processes ({remainder} real ones), but each "
        "gathered row is one rank's chunk of a sequence, so they cannot be dropped by row; give "
        "the dataloader drop_last=True or a dataset size divisible by batch_size x "
        "num_processes"
    )
