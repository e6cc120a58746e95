"""A process group for DeepSpeed when the script runs as one plain process.

DeepSpeed needs ``torch.distributed`` even for one process; without a group (``python
train.py``) it tries to discover one through MPI and fails without ``mpi4py``. accel gives it
a one-process gloo group instead, as torchrun would. DeepSpeed also insists on ``LOCAL_RANK``
in the environment, which MPI-style launchers and plain ``python`` do not set: accel sets it
from the process's local index.
"""

from __future__ import annotations

import os
import tempfile

import torch.distributed as dist

from accel.state.teardown import register_process_group


def ensure_process_group() -> None:
    """Create a one-process gloo group if none exists (no-op under torchrun/accel launch), and
    set ``LOCAL_RANK`` if the launcher did not.

    Example:
        >>> ensure_process_group()  # doctest: +SKIP
        >>> torch.distributed.get_world_size()  # doctest: +SKIP
        1
    """
    if "LOCAL_RANK" not in os.environ:
        from accel.state import PartialState

        os.environ["LOCAL_RANK"] = str(PartialState().local_process_index)
    if not dist.is_available() or dist.is_initialized():
        return
    handle, path = tempfile.mkstemp(prefix="accel-deepspeed-group-")
    os.close(handle)
    os.remove(path)  # the file store creates it; a stale file would hold old keys
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    register_process_group()  # accel created it: destroyed at interpreter exit
