"""The registry of collective backends (gloo, nccl, ...) that ``PartialState`` can start.

A backend says which device type it serves, which ``DistributedType`` it yields, how to tell it
is usable, and how to start its process group. The built-in ones are listed here; other
packages (accel-xla, third parties) add theirs through the entry-point group
``accel.backends``, read only when a name that is not built in is asked for, so importing
accel or starting a plain CPU job never scans installed packages. This module imports torch
only inside methods: the launcher can use it.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from accel.state.world import WorldInfo

ENTRY_POINT_GROUP = "accel.backends"


@dataclass(frozen=True)
class CollectiveBackend:
    """A ``torch.distributed`` backend and the device type it serves.

    Subclass and override :meth:`is_available`, :meth:`init_process_group`,
    :meth:`device` or :meth:`barrier` for backends that need more than torch's defaults,
    then expose an instance under the entry-point group ``accel.backends``.
    ``supports_object_collectives=False`` makes ``gather_object`` and
    ``broadcast_object_list`` raise a clear error instead of hanging on a backend that cannot
    move pickled objects.

    Example:
        >>> GLOO.device_type, GLOO.distributed_type
        ('cpu', 'MULTI_CPU')
    """

    name: str
    device_type: str
    distributed_type: str
    priority: int = 0
    supports_object_collectives: bool = True

    def is_available(self) -> bool:
        """Whether torch was built with this backend.

        Example:
            >>> GLOO.is_available()
            True
        """
        import torch.distributed as dist

        checker = getattr(dist, f"is_{self.name}_available", None)
        return bool(dist.is_available() and (checker() if checker is not None else True))

    def runtime_world(self) -> WorldInfo | None:
        """This process's place in the job as the device runtime reports it, or ``None``.

        ``None`` (the default) means the launcher's variables (``RANK``, ``WORLD_SIZE``, ...)
        describe the job. A backend whose runtime spawns and numbers the processes itself
        (torch-xla) returns the runtime's answer; ``PartialState`` then uses this backend
        even for a single process.

        Example:
            >>> GLOO.runtime_world() is None
            True
        """
        return None

    def init_process_group(
        self,
        *,
        rank: int,
        world_size: int,
        timeout: timedelta | None = None,
        init_method: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Start the default process group (rendezvous from ``MASTER_ADDR``/``MASTER_PORT``).

        Example:
            >>> GLOO.init_process_group(rank=0, world_size=1)  # doctest: +SKIP
        """
        import torch.distributed as dist

        options: dict[str, Any] = dict(kwargs)
        if timeout is not None:
            options["timeout"] = timeout
        if init_method is not None:
            options["init_method"] = init_method
        dist.init_process_group(backend=self.name, rank=rank, world_size=world_size, **options)

    def device(self, local_process_index: int) -> torch.device:
        """The device this process computes on; selects it as current where torch needs that.

        Example:
            >>> GLOO.device(0)
            device(type='cpu')
        """
        import torch

        if self.device_type == "cpu":
            return torch.device("cpu")
        module = getattr(torch, self.device_type)
        index = local_process_index % max(module.device_count(), 1)
        device = torch.device(self.device_type, index)
        module.set_device(device)
        return device

    def barrier(self, device: torch.device) -> None:
        """Block until every process of the default group reaches this call.

        Example:
            >>> GLOO.barrier(torch.device("cpu"))  # doctest: +SKIP
        """
        import torch.distributed as dist

        if self.device_type == "cpu" or device.index is None:
            dist.barrier()
        else:
            dist.barrier(device_ids=[device.index])


GLOO = CollectiveBackend("gloo", "cpu", "MULTI_CPU", priority=10)
MPI = CollectiveBackend("mpi", "cpu", "MULTI_CPU", priority=0)
NCCL = CollectiveBackend("nccl", "cuda", "MULTI_GPU", priority=10)
XCCL = CollectiveBackend("xccl", "xpu", "MULTI_XPU", priority=10)
HCCL = CollectiveBackend("hccl", "npu", "MULTI_NPU", priority=10)

BUILTIN_BACKENDS: dict[str, CollectiveBackend] = {b.name: b for b in (GLOO, MPI, NCCL, XCCL, HCCL)}


@functools.cache
def _plugin_backends() -> dict[str, CollectiveBackend]:
    found: dict[str, CollectiveBackend] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN_BACKENDS:
            continue
        backend = entry.load()
        if isinstance(backend, type):
            backend = backend()
        if not isinstance(backend, CollectiveBackend):
            raise TypeError(
                f"entry point {entry.name!r} = {entry.value!r} in group {ENTRY_POINT_GROUP!r} "
                f"must name a CollectiveBackend, got {type(backend).__name__}"
            )
        found[entry.name] = backend
    return found


def registered_backends() -> dict[str, CollectiveBackend]:
    """Every backend known: the built-in ones and those installed packages register.

    Example:
        >>> "gloo" in registered_backends()
        True
    """
    return {**BUILTIN_BACKENDS, **_plugin_backends()}


def get_backend(name: str, source: str = "backend") -> CollectiveBackend:
    """The backend registered as ``name``; ``source`` names where the name came from in errors.

    Example:
        >>> get_backend("gloo").device_type
        'cpu'
    """
    if name in BUILTIN_BACKENDS:
        return BUILTIN_BACKENDS[name]
    known = registered_backends()
    if name not in known:
        raise ValueError(
            f"{source}={name!r} is not a known collective backend; known: "
            f"{', '.join(sorted(known))}. Packages add backends through the entry-point "
            f"group {ENTRY_POINT_GROUP!r}."
        )
    return known[name]


def default_backend(device_type: str) -> CollectiveBackend | None:
    """The usable built-in backend with the highest priority for ``device_type``, if any.

    Example:
        >>> default_backend("cpu").name
        'gloo'
    """
    candidates = sorted(
        (b for b in BUILTIN_BACKENDS.values() if b.device_type == device_type),
        key=lambda b: -b.priority,
    )
    for backend in candidates:
        if backend.is_available():
            return backend
    return None
