"""What a strategy sees of the objects an ``Accelerator`` prepared: a read-only view.

Example:
    >>> import torch
    >>> models = [torch.nn.Linear(1, 1)]
    >>> view = PreparedObjects(models=models)
    >>> len(view.models), view.optimizers
    (1, ())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["PreparedObjects"]


class PreparedObjects:
    """The models, optimizers, schedulers and dataloaders ``prepare`` returned so far, in
    ``prepare`` order; always current (it reads the Accelerator's own lists) and read-only
    (tuples). A strategy reads them here; it adds objects by returning them from
    :meth:`~accel.core.strategies.TrainingStrategy.prepare`.

    Example:
        >>> PreparedObjects().models
        ()
    """

    def __init__(
        self,
        models: Sequence[torch.nn.Module] | None = None,
        optimizers: Sequence[Any] | None = None,
        schedulers: Sequence[Any] | None = None,
        dataloaders: Sequence[Any] | None = None,
    ) -> None:
        self._models = models if models is not None else []
        self._optimizers = optimizers if optimizers is not None else []
        self._schedulers = schedulers if schedulers is not None else []
        self._dataloaders = dataloaders if dataloaders is not None else []

    @property
    def models(self) -> tuple[torch.nn.Module, ...]:
        """The prepared models (wrapped: DDP, FSDP2, DeepSpeed engines, ...).

        Example:
            >>> PreparedObjects(models=[torch.nn.Identity()]).models[0]
            Identity()
        """
        return tuple(self._models)

    @property
    def optimizers(self) -> tuple[Any, ...]:
        """The prepared optimizers (``AcceleratedOptimizer`` and subclasses).

        Example:
            >>> PreparedObjects().optimizers
            ()
        """
        return tuple(self._optimizers)

    @property
    def schedulers(self) -> tuple[Any, ...]:
        """The prepared schedulers (``AcceleratedScheduler`` and subclasses).

        Example:
            >>> PreparedObjects().schedulers
            ()
        """
        return tuple(self._schedulers)

    @property
    def dataloaders(self) -> tuple[Any, ...]:
        """The prepared dataloaders.

        Example:
            >>> PreparedObjects().dataloaders
            ()
        """
        return tuple(self._dataloaders)
