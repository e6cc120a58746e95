"""Where this process stands in the job: rank, world size, local rank, read from the environment.

Understands torch's launcher (``torchrun``, ``python -m torch.distributed.run``, ``accel
launch``: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) and MPI launchers (Open MPI, MPICH/Intel MPI
PMI, MVAPICH2). Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from accel.state.env import read_int

_MPI_LAUNCHERS = (
    # (name, rank, size, local rank, local size)
    (
        "Open MPI",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),
    ("MPICH/Intel MPI", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    (
        "MVAPICH2",
        "MV2_COMM_WORLD_RANK",
        "MV2_COMM_WORLD_SIZE",
        "MV2_COMM_WORLD_LOCAL_RANK",
        "MV2_COMM_WORLD_LOCAL_SIZE",
    ),
)


@dataclass(frozen=True)
class WorldInfo:
    """This process's place in the job and which launcher said so.

    Example:
        >>> discover_world({}).world_size
        1
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    source: str

    @property
    def is_multi_node(self) -> bool:
        """Whether the job spans more than one machine.

        Example:
            >>> WorldInfo(0, 4, 0, 2, "torchrun").is_multi_node
            True
        """
        return self.local_world_size != self.world_size


def _check(info: WorldInfo) -> WorldInfo:
    where = f"(from {info.source})"
    if info.world_size < 1:
        raise ValueError(f"world size {info.world_size} {where} must be at least 1")
    if not 0 <= info.rank < info.world_size:
        raise ValueError(
            f"rank {info.rank} {where} is outside [0, {info.world_size}) for world size "
            f"{info.world_size}"
        )
    if info.local_world_size < 1:
        raise ValueError(f"local world size {info.local_world_size} {where} must be at least 1")
    if not 0 <= info.local_rank < info.local_world_size:
        raise ValueError(
            f"local rank {info.local_rank} {where} is outside [0, {info.local_world_size})"
        )
    return info


def discover_world(environ: Mapping[str, str] | None = None) -> WorldInfo:
    """Read rank and sizes from the launcher's variables; a plain ``python`` run is 1 process.

    Example:
        >>> discover_world({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}).rank
        1
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" in environ or "RANK" in environ:
        world_size = read_int(["WORLD_SIZE"], 1, environ)
        rank = read_int(["RANK"], 0, environ)
        local_world_size = read_int(["LOCAL_WORLD_SIZE"], world_size, environ)
        local_rank = read_int(["LOCAL_RANK"], rank % max(local_world_size, 1), environ)
        return _check(WorldInfo(rank, world_size, local_rank, local_world_size, "RANK/WORLD_SIZE"))
    for name, rank_key, size_key, local_rank_key, local_size_key in _MPI_LAUNCHERS:
        if size_key in environ:
            world_size = read_int([size_key], 1, environ)
            rank = read_int([rank_key], 0, environ)
            local_world_size = read_int([local_size_key], world_size, environ)
            local_rank = read_int([local_rank_key], rank % max(local_world_size, 1), environ)
            return _check(WorldInfo(rank, world_size, local_rank, local_world_size, name))
    return WorldInfo(0, 1, 0, 1, "single process")
