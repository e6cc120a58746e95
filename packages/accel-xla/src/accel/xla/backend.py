"""The ``xla`` collective backend: XLA devices, the runtime's process numbering, XLA collectives.

Registered under the entry-point group ``accel.backends`` as ``xla``; ``PartialState`` uses
it when ``ACCEL_USE_XLA`` is set (``accel launch --tpu``) or ``PJRT_DEVICE`` is set. With
several processes it starts ``torch.distributed``'s ``xla`` process group, through which
``accel.ops``' collectives (``gather``, ``reduce``, ``broadcast``, ``pad_across_processes``)
run XLA's collective ops unchanged. torch-xla is imported only inside the methods.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from accel.state.backends import CollectiveBackend
from accel.state.world import WorldInfo
from accel.xla.runtime import load_torch_xla

if TYPE_CHECKING:
    import torch

_SOURCE = "this XLA job (ACCEL_USE_XLA or PJRT_DEVICE)"


@dataclass(frozen=True)
class XLABackend(CollectiveBackend):
    """torch-xla's runtime and collectives behind ``PartialState``.

    Example:
        >>> XLA_BACKEND.distributed_type, XLA_BACKEND.device_type
        ('XLA', 'xla')
    """

    def is_available(self) -> bool:
        """Whether torch-xla is installed (found without importing it).

        Example:
            >>> isinstance(XLA_BACKEND.is_available(), bool)
            True
        """
        return importlib.util.find_spec("torch_xla") is not None

    def runtime_world(self) -> WorldInfo:
        """Rank and sizes from XLA's runtime (``xmp.spawn`` numbers the processes itself).

        Example:
            >>> XLA_BACKEND.runtime_world().world_size  # doctest: +SKIP
            1
        """
        load_torch_xla(_SOURCE)
        import torch_xla.runtime as xr  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

        rank, size = xr.global_ordinal(), xr.world_size()
        local_size = max(xr.local_device_count(), 1) if size > 1 else 1
        local_rank = xr.local_ordinal() if size > 1 else 0
        return WorldInfo(rank, size, local_rank, local_size, "torch-xla runtime")

    def init_process_group(
        self,
        *,
        rank: int,
        world_size: int,
        timeout: timedelta | None = None,
        init_method: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Start ``torch.distributed``'s ``xla`` group (XLA's own rendezvous, ``xla://``).

        ``rank`` and ``world_size`` come from :meth:`runtime_world`; the rendezvous reads the
        same runtime, so they are not passed on.

        Example:
            >>> XLA_BACKEND.init_process_group(rank=0, world_size=8)  # doctest: +SKIP
        """
        load_torch_xla(_SOURCE)
        import torch.distributed as dist
        import torch_xla.distributed.xla_backend  # noqa: F401  (registers the "xla" backend)  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

        options: dict[str, Any] = dict(kwargs)
        if timeout is not None:
            options["timeout"] = timeout
        dist.init_process_group("xla", init_method=init_method or "xla://", **options)

    def device(self, local_process_index: int) -> torch.device:
        """This process's XLA device (``xla:0``: each process drives one device).

        Example:
            >>> XLA_BACKEND.device(0)  # doctest: +SKIP
            device(type='xla', index=0)
        """
        load_torch_xla(_SOURCE)
        import torch_xla  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

        return torch_xla.device()

    def barrier(self, device: torch.device) -> None:
        """Wait for every process (XLA's rendezvous; the ``xla`` group's barrier does nothing).

        Example:
            >>> XLA_BACKEND.barrier(XLA_BACKEND.device(0))  # doctest: +SKIP
        """
        xm = load_torch_xla(_SOURCE)
        xm.rendezvous("accel.wait_for_everyone")


XLA_BACKEND = XLABackend("xla", "xla", "XLA", priority=0, supports_object_collectives=False)
