"""Data parallelism with ``torch.nn.parallel.DistributedDataParallel``."""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from accel.core.strategies.base import TrainingStrategy


class DDPStrategy(TrainingStrategy):
    """Wrap trainable models in DDP; ``no_sync`` skips the gradient all-reduce.

    ``DistributedDataParallelKwargs`` given to the ``Accelerator`` go to DDP, and its
    communication hook (fp16/bf16 compression, PowerSGD) is registered.

    Example:
        >>> DDPStrategy.name
        'ddp'
    """

    name = "ddp"

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Wrap ``model`` in DDP if it has trainable parameters and more than one process runs.

        Example:
            >>> strategy.wrap_model(model)  # doctest: +SKIP
        """
        accelerator = self.accelerator
        if accelerator.num_processes == 1 or isinstance(model, DistributedDataParallel):
            return model
        if not any(p.requires_grad for p in model.parameters()):
            return model
        handler = accelerator.ddp_handler
        options = handler.to_kwargs() if handler is not None else {}
        device = accelerator.device
        ids = None if device.type == "cpu" else [device.index]
        wrapped = DistributedDataParallel(
            model, device_ids=ids, output_device=ids[0] if ids else None, **options
        )
        if handler is not None and hasattr(handler, "register_comm_hook"):
            handler.register_comm_hook(wrapped)
        return wrapped

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """DDP's own ``no_sync`` for wrapped models.

        Example:
            >>> with strategy.no_sync(model):  # doctest: +SKIP
            ...     loss.backward()
        """
        if isinstance(model, DistributedDataParallel):
            return model.no_sync()
        return contextlib.nullcontext()

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module inside DDP.

        Example:
            >>> strategy.unwrap_model(ddp_model)  # doctest: +SKIP
        """
        return model.module if isinstance(model, DistributedDataParallel) else model
