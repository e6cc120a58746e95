"""Joining the processes of a job: the collective backend it uses and its process group.

``PartialState`` calls these once, when the first instance sets the shared state up.

Example:
    >>> runtime_backend(cpu=True) is None
    True
"""

from __future__ import annotations

import os
from typing import Any

import torch

from accel.state import env
from accel.state.backends import (
    CollectiveBackend,
    default_backend,
    get_backend,
    registered_backends,
)
from accel.state.devices import detect_device_type
from accel.state.enums import DistributedType
from accel.state.teardown import install_exit_teardown, register_process_group
from accel.state.world import WorldInfo, discover_world


def adopt_existing_group() -> tuple[WorldInfo, CollectiveBackend]:
    """The world and backend of a process group someone else already started.

    Example:
        >>> adopt_existing_group()  # doctest: +SKIP
        (WorldInfo(rank=0, world_size=2, ...), CollectiveBackend(name='gloo', ...))
    """
    dist = torch.distributed
    install_exit_teardown()  # the group stays the script's; the exit still waits for gloo
    name = str(dist.get_backend())
    try:
        backend = get_backend(name, source="the existing process group's backend")
    except ValueError:
        backend = CollectiveBackend(name, "cpu", DistributedType.MULTI_CPU.value)
    rank, size = dist.get_rank(), dist.get_world_size()
    found = discover_world()
    local_rank = found.local_rank if found.world_size == size else rank
    local_size = found.local_world_size if found.world_size == size else size
    return WorldInfo(rank, size, local_rank, local_size, "existing process group"), backend


def runtime_backend(cpu: bool) -> CollectiveBackend | None:
    """The backend whose device runtime defines this job (torch-xla), if one is asked for.

    ``ACCEL_USE_XLA`` (set by ``accel launch --tpu``) asks for XLA; when it is unset,
    ``PJRT_DEVICE`` set in an environment that has accel-xla asks too, as a TPU VM's
    setup does under Accelerate. ``cpu`` wins over both.

    Example:
        >>> runtime_backend(cpu=True) is None
        True
    """
    if cpu:
        return None
    names = [n for n in env.env_names(env.USE_XLA) if n in os.environ]
    if names:
        if not env.read_flag(env.USE_XLA):
            return None
    elif not (os.environ.get("PJRT_DEVICE") and "xla" in registered_backends()):
        return None
    source = f"{names[0]}={os.environ[names[0]]}" if names else "PJRT_DEVICE"
    if "xla" not in registered_backends():
        raise RuntimeError(
            f"{source} asks for an XLA job, but accel-xla is not installed; install it with "
            "pip install 'accel-core[xla]' (torch-xla must have the same major.minor as torch)"
        )
    return get_backend("xla", source=source)


def choose_backend(cpu: bool, requested: str | None) -> CollectiveBackend:
    """The collective backend for a new multi-process job: ``requested`` (the ``backend``
    argument), else ``ACCEL_BACKEND``, else the default for the detected device type.

    Example:
        >>> choose_backend(cpu=True, requested="gloo").name
        'gloo'
    """
    source = "backend argument"
    if requested is None:
        requested = env.read_env(env.BACKEND)
        source = f"{env.PREFIX}{env.BACKEND}"
    if requested is not None:
        backend = get_backend(requested, source=source)
        if cpu and backend.device_type != "cpu":
            raise ValueError(
                f"{source}={requested!r} serves {backend.device_type} devices but cpu=True "
                "was asked for; use backend 'gloo' (or 'mpi') on CPU"
            )
        if not backend.is_available():
            raise ValueError(f"{source}={requested!r}: this torch build lacks that backend")
        return backend
    device_type = detect_device_type(cpu)
    backend = default_backend(device_type)
    if backend is None:
        raise RuntimeError(
            f"no collective backend serves device type {device_type!r} for a multi-process "
            "job; pass cpu=True (or set ACCEL_USE_CPU=1) to run the processes on CPU"
        )
    return backend


def start_process_group(
    world: WorldInfo, backend: CollectiveBackend, kwargs: dict[str, Any]
) -> None:
    """Fill the ``torch.distributed`` rendezvous variables ``world`` implies and join the group.

    Example:
        >>> start_process_group(discover_world(), get_backend("gloo"), {})  # doctest: +SKIP
    """
    os.environ.setdefault("RANK", str(world.rank))
    os.environ.setdefault("WORLD_SIZE", str(world.world_size))
    os.environ.setdefault("LOCAL_RANK", str(world.local_rank))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(world.local_world_size))
    if kwargs.get("init_method") is None:
        if "MASTER_ADDR" not in os.environ:
            if world.is_multi_node:
                raise ValueError(
                    f"a multi-node job ({world.world_size} processes, {world.local_world_size} "
                    f"on this node, from {world.source}) needs MASTER_ADDR set to the "
                    "address of the node running rank 0"
                )
            os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ.setdefault("MASTER_PORT", "29500")
    if backend.device_type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        torch.set_num_threads(max(1, (cores or os.cpu_count() or 1) // world.local_world_size))
    backend.init_process_group(rank=world.rank, world_size=world.world_size, **kwargs)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        register_process_group()  # destroyed at interpreter exit (see accel.state.teardown)
