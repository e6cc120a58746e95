"""Configuration objects of training: data loading, project folders, gradient accumulation,
``torch.compile``. (FSDP2's plugin lives next to its strategy, in
:mod:`accel.core.strategies.fsdp_plugin`.)

Each one checks its values when it is built. A bad value raises ``ValueError`` (or
``TypeError`` for a wrong type) naming the field, the value, where it came from (argument or
environment variable) and what would be valid.

Example:
    >>> from accel.core.plugins import GradientAccumulationPlugin
    >>> GradientAccumulationPlugin(num_steps=4).to_kwargs()
    {'num_steps': 4}
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from accel.core.kwargs import (
    ARGUMENT,
    _check_bool,
    _env_with_source,
    _invalid,
    check_int,
    env_truth,
)
from accel.state.enums import DynamoBackend
from accel.state.kwargs import KwargsHandler
from accel.state.options import DYNAMO_MODES

__all__ = [
    "DataLoaderConfiguration",
    "GradientAccumulationPlugin",
    "ProjectConfiguration",
    "TorchDynamoPlugin",
]


@dataclasses.dataclass
class DataLoaderConfiguration:
    """How ``Accelerator.prepare`` shards and feeds dataloaders.

    ``split_batches=True`` splits each batch across processes (the batch size stays what the
    script set) instead of giving each process its own batch; ``dispatch_batches=None`` means
    "dispatch from the main process for iterable datasets only"; ``even_batches`` pads the last
    batch by repeating early samples so every process gets one; ``use_seedable_sampler`` with
    ``data_seed`` makes shuffling reproducible; ``non_blocking`` uses asynchronous
    host-to-device copies; ``use_stateful_dataloader`` backs the loader with torchdata's
    ``StatefulDataLoader``.

    Example:
        >>> config = DataLoaderConfiguration(split_batches=True, even_batches=False)
        >>> config.dispatch_batches is None
        True
    """

    split_batches: bool = False
    dispatch_batches: bool | None = None
    even_batches: bool = True
    use_seedable_sampler: bool = False
    data_seed: int | None = None
    non_blocking: bool = False
    use_stateful_dataloader: bool = False

    def __post_init__(self) -> None:
        owner = "DataLoaderConfiguration"
        for name in (
            "split_batches",
            "even_batches",
            "use_seedable_sampler",
            "non_blocking",
            "use_stateful_dataloader",
        ):
            _check_bool(owner, name, getattr(self, name))
        _check_bool(owner, "dispatch_batches", self.dispatch_batches, optional=True)
        check_int(owner, "data_seed", self.data_seed, 0, optional=True)


@dataclasses.dataclass
class ProjectConfiguration:
    """Where a project keeps checkpoints and logs, and how checkpoints are named and pruned.

    ``logging_dir`` defaults to ``project_dir``. With ``automatic_checkpoint_naming``,
    ``save_state()`` writes ``project_dir/checkpoints/checkpoint_<iteration>`` and keeps at most
    ``total_limit`` of them.

    Example:
        >>> config = ProjectConfiguration(project_dir="runs/exp1", automatic_checkpoint_naming=True)
        >>> config.logging_dir
        'runs/exp1'
    """

    project_dir: str | os.PathLike | None = None
    logging_dir: str | os.PathLike | None = None
    automatic_checkpoint_naming: bool = False
    total_limit: int | None = None
    iteration: int = 0
    save_on_each_node: bool = False

    def __post_init__(self) -> None:
        owner = "ProjectConfiguration"
        for name in ("project_dir", "logging_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise _invalid(
                    owner, name, value, "a str or os.PathLike path, or None", error=TypeError
                )
        _check_bool(owner, "automatic_checkpoint_naming", self.automatic_checkpoint_naming)
        _check_bool(owner, "save_on_each_node", self.save_on_each_node)
        check_int(owner, "total_limit", self.total_limit, 1, optional=True)
        check_int(owner, "iteration", self.iteration, 0)
        self.set_directories(self.project_dir)

    def set_directories(self, project_dir: str | os.PathLike | None = None) -> None:
        """Set ``project_dir``, and ``logging_dir`` too when it was not given.

        Example:
            >>> config = ProjectConfiguration()
            >>> config.set_directories("out")
            >>> (config.project_dir, config.logging_dir)
            ('out', 'out')
        """
        self.project_dir = project_dir
        if self.logging_dir is None:
            self.logging_dir = project_dir


@dataclasses.dataclass
class GradientAccumulationPlugin(KwargsHandler):
    """How gradients are accumulated over several batches before each optimizer step.

    ``num_steps=None`` means "not given" (the Accelerator then requires a value from its
    ``gradient_accumulation_steps`` argument or the environment). ``adjust_scheduler`` steps
    the scheduler once per real optimizer step; ``sync_with_dataloader`` forces a step at the
    end of the dataloader; ``sync_each_batch`` synchronizes gradients on every batch (less
    memory, more communication).

    Example:
        >>> plugin = GradientAccumulationPlugin(num_steps=8, sync_each_batch=True)
        >>> plugin.to_kwargs()
        {'num_steps': 8, 'sync_each_batch': True}
    """

    num_steps: int | None = None
    adjust_scheduler: bool = True
    sync_with_dataloader: bool = True
    sync_each_batch: bool = False

    def __post_init__(self) -> None:
        owner = "GradientAccumulationPlugin"
        check_int(owner, "num_steps", self.num_steps, 1, optional=True)
        for name in ("adjust_scheduler", "sync_with_dataloader", "sync_each_batch"):
            _check_bool(owner, name, getattr(self, name))


COMPILE_MODES = DYNAMO_MODES
_DYNAMO_DEFAULTS = {
    "backend": "no",
    "mode": "default",
    "fullgraph": False,
    "dynamic": None,
    "options": None,
    "disable": False,
}


@dataclasses.dataclass
class TorchDynamoPlugin(KwargsHandler):
    """Options for ``torch.compile`` applied by ``prepare`` to the model.

    Fields left at ``None`` are read from the environment (``ACCEL_<NAME>``, or Accelerate's
    ``ACCELERATE_<NAME>``): ``DYNAMO_BACKEND`` (default ``"no"``: do not compile),
    ``DYNAMO_MODE`` (default ``"default"``), ``DYNAMO_USE_FULLGRAPH``, ``DYNAMO_USE_DYNAMIC``
    and ``DYNAMO_USE_REGIONAL_COMPILATION``. An explicit argument wins over the environment.
    ``backend`` becomes a :class:`~accel.state.DynamoBackend`.

    Example:
        >>> plugin = TorchDynamoPlugin(backend="inductor", mode="reduce-overhead")
        >>> plugin.to_kwargs()
        {'backend': 'inductor', 'mode': 'reduce-overhead'}
        >>> compiled = torch.compile(model, **plugin.to_kwargs())  # doctest: +SKIP
    """

    backend: DynamoBackend | str | None = None
    mode: str | None = None
    fullgraph: bool | None = None
    dynamic: bool | None = None
    options: dict[str, Any] | None = None
    disable: bool = False
    use_regional_compilation: bool | None = None

    def __post_init__(self) -> None:
        owner = "TorchDynamoPlugin"
        source = ARGUMENT
        if self.backend is None:
            raw, source = _env_with_source("DYNAMO_BACKEND")
            self.backend = "no" if raw is None else raw
        backends = [b.value.lower() for b in DynamoBackend]
        if isinstance(self.backend, DynamoBackend):
            pass
        elif isinstance(self.backend, str) and self.backend.upper() in DynamoBackend:
            self.backend = DynamoBackend(self.backend.upper())
        else:
            raise _invalid(owner, "backend", self.backend, backends, source)

        source = ARGUMENT
        if self.mode is None:
            raw, source = _env_with_source("DYNAMO_MODE")
            self.mode = "default" if raw is None else raw
        if self.mode not in COMPILE_MODES:
            raise _invalid(owner, "mode", self.mode, COMPILE_MODES, source)

        for name, env in (
            ("fullgraph", "DYNAMO_USE_FULLGRAPH"),
            ("dynamic", "DYNAMO_USE_DYNAMIC"),
            ("use_regional_compilation", "DYNAMO_USE_REGIONAL_COMPILATION"),
        ):
            if getattr(self, name) is None:
                raw, source = _env_with_source(env)
                if raw is not None:
                    setattr(self, name, env_truth(owner, name, raw, source))
                elif name != "dynamic":  # dynamic=None is torch's own "decide automatically"
                    setattr(self, name, False)
            _check_bool(owner, name, getattr(self, name), optional=name == "dynamic")
        _check_bool(owner, "disable", self.disable)
        if self.options is not None and not isinstance(self.options, dict):
            raise _invalid(owner, "options", self.options, "a dict or None", error=TypeError)
        if self.options is not None and self.mode != "default":
            raise ValueError(
                f"{owner}: mode={self.mode!r} and options={self.options!r} were both given; "
                "torch.compile accepts only one of them (leave mode at 'default' or drop options)"
            )

    def to_dict(self) -> dict[str, Any]:
        """All fields, with ``backend`` as its lower-case string.

        Example:
            >>> TorchDynamoPlugin(backend="eager").to_dict()["backend"]
            'eager'
        """
        config = super().to_dict()
        backend = self.backend  # a DynamoBackend once __post_init__ has run
        name = backend.value if isinstance(backend, DynamoBackend) else str(backend)
        config["backend"] = name.lower()
        return config

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``torch.compile`` that differ from its defaults.

        Compared against the built-in defaults, never against the environment, so a backend
        set through ``ACCEL_DYNAMO_BACKEND`` is included. ``use_regional_compilation`` is not a
        ``torch.compile`` argument and is left out.

        Example:
            >>> TorchDynamoPlugin(backend="inductor", fullgraph=True).to_kwargs()
            {'backend': 'inductor', 'fullgraph': True}
        """
        config = self.to_dict()
        return {k: config[k] for k, default in _DYNAMO_DEFAULTS.items() if config[k] != default}
