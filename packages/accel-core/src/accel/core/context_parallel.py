"""``Accelerator.maybe_context_parallel``: torch's ring attention over the ``cp`` sub-mesh.

Context parallelism splits the sequence dimension of the given buffers across the ranks of
the ``cp`` mesh dimension and turns ``scaled_dot_product_attention`` into ring attention
(``torch.distributed.tensor.experimental.context_parallel``). DTensor has sharding rules for
the CUDA attention kernels only: on CPU torch fails inside the first attention call with
"Operator aten._scaled_dot_product_flash_attention_for_cpu.default does not have a sharding
strategy registered", so ``Accelerator`` refuses ``cp_size > 1`` on other devices when it is
created, quoting that failure.

Example:
    >>> with context_parallel_region(None, None, None, None, None):
    ...     pass
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from accel.core.parallelism_config import ParallelismConfig


def context_parallel_region(
    config: ParallelismConfig | None,
    mesh: Any,
    buffers: list[torch.Tensor] | None,
    buffer_seq_dims: list[int] | None,
    no_restore_buffers: set[torch.Tensor] | None,
) -> contextlib.AbstractContextManager[Any]:
    """The ring-attention context for ``buffers`` when context parallelism is on, else a
    no-op context.

    Example:
        >>> with context_parallel_region(None, None, [torch.ones(1, 4)], [1], None):
        ...     pass
    """
    if config is None or not config.cp_enabled:
        return contextlib.nullcontext()
    buffers = list(buffers or [])
    seq_dims = list(buffer_seq_dims or [])
    if len(seq_dims) != len(buffers):
        raise ValueError(
            f"maybe_context_parallel got {len(buffers)} buffers and {len(seq_dims)} "
            "buffer_seq_dims; give one sequence dimension per buffer"
        )
    from torch.distributed.tensor.experimental import context_parallel
    from torch.distributed.tensor.experimental._attention import set_rotate_method

    set_rotate_method(config.cp_handler.cp_comm_strategy)
    return context_parallel(
        mesh["cp"],
        buffers=buffers,
        buffer_seq_dims=seq_dims,
        no_restore_buffers=set(no_restore_buffers or ()),
    )
