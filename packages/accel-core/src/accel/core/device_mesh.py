"""Checks of a ``ParallelismConfig`` against the job, and positions on its DeviceMesh.

The mesh itself is built by :meth:`ParallelismConfig.build_device_mesh`: the enabled dimensions
in the order ``dp_replicate, dp_shard, cp, sp, tp`` (so the ranks of one tensor parallel group
are neighbours) and the flattened dimensions Accelerate exposes: ``dp`` (all data-parallel
ranks), ``dp_shard_cp`` (what FSDP shards over) and ``dp_cp`` (what the loss is averaged over).

Example:
    >>> from accel.core.parallelism_config import ParallelismConfig
    >>> check_job(ParallelismConfig(dp_shard_size=2), 2, "cpu", "MULTI_CPU", False)
    >>> data_parallel_position(None, None) is None
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accel.state.parallelism_sizes import check_parallelism_sizes

if TYPE_CHECKING:
    from accel.core.parallelism_config import ParallelismConfig

# What torch 2.15 raises when ring attention meets the CPU kernel (tried on gloo, 2 processes).
CPU_SDPA_FAILURE = (
    "NotImplementedError: Operator aten._scaled_dot_product_flash_attention_for_cpu.default "
    "does not have a sharding strategy registered."
)
_SIZE_NAMES = ("dp_replicate_size", "dp_shard_size", "tp_size", "cp_size", "sp_size")


def _sizes(config: ParallelismConfig) -> str:
    return ", ".join(f"{name}={getattr(config, name)}" for name in _SIZE_NAMES)


def check_job(
    config: ParallelismConfig,
    num_processes: int,
    device_type: str,
    distributed_type: str,
    fsdp_requested: bool,
) -> None:
    """Raise ``ValueError`` when ``config`` cannot run in this job: sizes whose product is
    not the number of processes, context parallelism without CUDA, sequence parallelism
    without DeepSpeed, tensor parallelism with DeepSpeed, an FSDP plugin with nothing to
    shard over.

    A config whose sizes are all 1 in a job of several processes becomes
    ``dp_replicate_size=num_processes`` (plain data parallelism), as in Accelerate; with
    ``sp_size`` alone, the remaining processes become DeepSpeed's data-parallel groups
    (``dp_replicate_size = num_processes // sp_size``).

    Example:
        >>> from accel.core.parallelism_config import ParallelismConfig
        >>> check_job(ParallelismConfig(tp_size=2), 4, "cpu", "MULTI_CPU", False)
        Traceback (most recent call last):
        ...
        ValueError: ParallelismConfig sizes dp_replicate_size=1, dp_shard_size=1, tp_size=2, cp_size=1, sp_size=1 multiply to 2, but the job runs 4 processes (WORLD_SIZE); adjust the sizes so that their product is 4
    """
    if config.total_size == 1 and num_processes > 1:
        config._set_size("dp_replicate", num_processes)
    if config.sp_enabled:
        _check_sequence_parallel(config, num_processes, distributed_type)
    check_parallelism_sizes(
        {name: getattr(config, name) for name in _SIZE_NAMES}, num_processes, "WORLD_SIZE"
    )
    if config.cp_enabled and device_type != "cuda":
        raise ValueError(
            f"ParallelismConfig(cp_size={config.cp_size}) needs CUDA: context parallelism runs "
            "torch's ring attention (torch.distributed.tensor.experimental.context_parallel), "
            "which shards scaled_dot_product_attention through DTensor and has sharding rules "
            f"for the CUDA kernels only; on {device_type!r} torch fails with "
            f"{CPU_SDPA_FAILURE!r}. Use cp_size=1 on this machine"
        )
    if distributed_type == "DEEPSPEED" and (
        config.tp_enabled
        or config.cp_enabled
        or (config.dp_shard_enabled and not config.sp_enabled)
    ):
        raise ValueError(
            f"ParallelismConfig ({_sizes(config)}) cannot be combined with DeepSpeed: "
            "tensor/context parallelism and dp_shard_size run on FSDP2 and DTensor; drop the "
            "DeepSpeed plugin or set those sizes to 1"
        )
    if fsdp_requested and not (config.dp_shard_enabled or config.cp_enabled):
        raise ValueError(
            f"FSDP was asked for (fsdp_plugin / --use_fsdp) but ParallelismConfig ({_sizes(config)}) "
            "has no dimension to shard over (dp_shard_size and cp_size are 1); set "
            "dp_shard_size > 1 or drop the FSDP plugin"
        )


def _check_sequence_parallel(
    config: ParallelismConfig, num_processes: int, distributed_type: str
) -> None:
    """Sequence parallelism is DeepSpeed's Ulysses (accel-deepspeed); without data-parallel
    sizes, the processes left over form DeepSpeed's data-parallel groups."""
    if distributed_type != "DEEPSPEED":
        raise ValueError(
            f"ParallelismConfig(sp_size={config.sp_size}, sp_backend={config.sp_backend!r}) "
            "runs DeepSpeed's Ulysses sequence parallelism, but this job does not use "
            f"DeepSpeed (distributed type {distributed_type}); pass "
            "Accelerator(deepspeed_plugin=DeepSpeedPlugin(...)) or launch with --use_deepspeed "
            "(needs accel-deepspeed), or use sp_size=1"
        )
    per_group = config.non_data_parallel_size
    if config.data_parallel_size == 1 and num_processes % per_group == 0:
        config._set_size("dp_replicate", num_processes // per_group)


def local_rank(mesh: Any, dim: str, enabled: bool) -> int:
    """This process's index along mesh dimension ``dim`` (0 when the dimension is off).

    Example:
        >>> local_rank(None, "tp", False)
        0
    """
    return mesh.get_local_rank(dim) if enabled and mesh is not None else 0


def data_parallel_position(config: ParallelismConfig | None, mesh: Any) -> tuple[int, int] | None:
    """``(number of data-parallel groups, this process's group)`` when a mesh sets them apart
    (ranks of one tensor/context parallel group share a batch), else ``None``.

    Example:
        >>> data_parallel_position(None, None) is None
        True
    """
    if config is None or mesh is None or not config.non_dp_dim_names:
        return None
    if not config.dp_dim_names:
        return 1, 0
    return config.data_parallel_size, mesh["dp"].get_local_rank()
