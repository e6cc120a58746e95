"""One ``torch.distributed`` DeviceMesh for a ``ParallelismConfig``, checked against the job.

The mesh has the enabled dimensions in the order ``dp_replicate, dp_shard, cp, sp, tp`` (so the
ranks of one tensor parallel group are neighbours) and the flattened dimensions Accelerate
exposes: ``dp`` (all data-parallel ranks), ``dp_shard_cp`` (what FSDP shards over) and
``dp_cp`` (what the loss is averaged over).

Example:
    >>> from accel.core.parallelism_config import ParallelismConfig
    >>> mesh = build_device_mesh(ParallelismConfig(dp_shard_size=2, tp_size=2), "cpu")  # doctest: +SKIP
    >>> mesh["dp"].size(), mesh["tp"].size()  # doctest: +SKIP
    (2, 2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accel.core.parallelism_config import ParallelismConfig

_FLATTENED = (
    ("dp", "dp_dim_names"),
    ("dp_shard_cp", "dp_shard_cp_dim_names"),
    ("dp_cp", "dp_cp_dim_names"),
)


def build_device_mesh(config: ParallelismConfig, device_type: str) -> Any:
    """A new mesh for ``config`` (``None`` when no size is above 1).

    Example:
        >>> from accel.core.parallelism_config import ParallelismConfig
        >>> build_device_mesh(ParallelismConfig(), "cpu") is None
        True
    """
    layout = config._get_mesh()
    if not layout:
        return None
    from torch.distributed.device_mesh import init_device_mesh

    names, shape = layout
    mesh = init_device_mesh(device_type, shape, mesh_dim_names=names)
    for flat_name, attribute in _FLATTENED:
        dims = getattr(config, attribute)
        if dims:
            mesh[tuple(dims)]._flatten(flat_name)
    return mesh


def _sizes(config: ParallelismConfig) -> str:
    names = ("dp_replicate_size", "dp_shard_size", "tp_size", "cp_size", "sp_size")
    return ", ".join(f"{name}={getattr(config, name)}" for name in names)


def check_job(
    config: ParallelismConfig,
    num_processes: int,
    device_type: str,
    distributed_type: str,
    fsdp_requested: bool,
) -> None:
    """Raise ``ValueError`` when ``config`` cannot run in this job: sizes whose product is
    not the number of processes, context parallelism without CUDA, sequence parallelism,
    tensor parallelism with DeepSpeed, an FSDP plugin with nothing to shard over.

    A config whose sizes are all 1 in a job of several processes becomes
    ``dp_replicate_size=num_processes`` (plain data parallelism), as in Accelerate.

    Example:
        >>> from accel.core.parallelism_config import ParallelismConfig
        >>> check_job(ParallelismConfig(tp_size=2), 4, "cpu", "MULTI_CPU", False)
        Traceback (most recent call last):
        ...
        ValueError: ParallelismConfig sizes (dp_replicate_size=1, dp_shard_size=1, tp_size=2, cp_size=1, sp_size=1) multiply to 2, but the job runs 4 processes (WORLD_SIZE); adjust the sizes so that their product is 4
    """
    if config.total_size == 1 and num_processes > 1:
        config._set_size("dp_replicate", num_processes)
    if config.sp_enabled:
        raise ValueError(
            f"ParallelismConfig(sp_size={config.sp_size}) asks for DeepSpeed Ulysses sequence "
            "parallelism, which accel-deepspeed does not implement yet; use sp_size=1 (or "
            "tp_size / dp_shard_size to split the work)"
        )
    if config.total_size != num_processes:
        raise ValueError(
            f"ParallelismConfig sizes ({_sizes(config)}) multiply to {config.total_size}, but "
            f"the job runs {num_processes} processes (WORLD_SIZE); adjust the sizes so that "
            f"their product is {num_processes}"
        )
    if config.cp_enabled and device_type != "cuda":
        raise ValueError(
            f"ParallelismConfig(cp_size={config.cp_size}) needs CUDA: context parallelism runs "
            "torch's ring attention (torch.distributed.tensor.experimental.context_parallel), "
            f"which only has CUDA scaled-dot-product-attention kernels; this job's device is "
            f"{device_type!r}. Use cp_size=1 on this machine"
        )
    if distributed_type == "DEEPSPEED" and (
        config.tp_enabled or config.cp_enabled or config.dp_shard_enabled
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
