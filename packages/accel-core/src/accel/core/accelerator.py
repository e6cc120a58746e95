"""``Accelerator``: one object that adapts a PyTorch training loop to the job it runs in.

This module builds it (reads the arguments, the launcher's environment and the kwargs
handlers into the shared state and a training strategy); what it does is mixed in by concern:
:mod:`~accel.core.accelerator_view` (what the job looks like),
:mod:`~accel.core.accelerator_prepare` (``prepare`` and the prepared objects),
:mod:`~accel.core.accelerator_step` (the training step),
:mod:`~accel.core.accelerator_processes` (process control and collectives),
:mod:`~accel.core.accelerator_tracking` and :mod:`~accel.core.accelerator_checkpoints`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from accel.core.accelerator_checkpoints import CheckpointingMixin
from accel.core.accelerator_prepare import PreparingMixin
from accel.core.accelerator_processes import ProcessControlMixin
from accel.core.accelerator_step import TrainingStepMixin
from accel.core.accelerator_tracking import TrackingMixin
from accel.core.accelerator_view import AcceleratorView
from accel.core.checkpoint.async_writer import AsyncCheckpointWriter
from accel.core.device_mesh import check_job
from accel.core.optimizer import AcceleratedOptimizer
from accel.core.parallelism_config import resolve_parallelism_options
from accel.core.plugins import (
    DataLoaderConfiguration,
    GradientAccumulationPlugin,
    ProjectConfiguration,
    TorchDynamoPlugin,
)
from accel.core.precision import check_mixed_precision, make_grad_scaler
from accel.core.scheduler import AcceleratedScheduler
from accel.core.strategies import PreparedObjects, chosen_strategy, load_strategy
from accel.core.strategies.fsdp_plugin import FullyShardedDataParallelPlugin
from accel.state import (
    AcceleratorState,
    DynamoBackend,
    GradientState,
    PartialState,
    RNGType,
    env,
)
from accel.state.options import option, read_setting

_HANDLER_SLOTS = {
    "DistributedDataParallelKwargs": "ddp_handler",
    "GradScalerKwargs": "scaler_handler",
    "InitProcessGroupKwargs": "init_handler",
    "AutocastKwargs": "autocast_handler",
    "FP8RecipeKwargs": "fp8_recipe_handler",
}


class Accelerator(
    ProcessControlMixin,
    TrainingStepMixin,
    TrackingMixin,
    CheckpointingMixin,
    PreparingMixin,
    AcceleratorView,
):
    """Adapts models, optimizers, schedulers and dataloaders to the job, and runs the loop.

    The same script runs on one CPU, several processes, GPUs or machines: pass your objects
    through :meth:`prepare`, call :meth:`backward` instead of ``loss.backward()``, and start
    the script with ``torchrun`` (or ``accel launch``), or plain ``python`` for one process.

    Example:
        >>> import torch
        >>> from accel.core import Accelerator
        >>> accelerator = Accelerator()
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> model, optimizer = accelerator.prepare(model, optimizer)
        >>> loss = model(torch.randn(8, 4)).pow(2).mean()
        >>> accelerator.backward(loss)
        >>> optimizer.step(); optimizer.zero_grad()
    """

    def __init__(
        self,
        device_placement: bool = True,
        split_batches: bool | None = None,
        mixed_precision: str | None = None,
        gradient_accumulation_steps: int = 1,
        cpu: bool = False,
        dataloader_config: DataLoaderConfiguration | None = None,
        deepspeed_plugin: Any = None,
        fsdp_plugin: FullyShardedDataParallelPlugin | None = None,
        torch_tp_plugin: Any = None,
        megatron_lm_plugin: Any = None,
        rng_types: list[str | RNGType] | None = None,
        log_with: Any = None,
        project_dir: str | os.PathLike[str] | None = None,
        project_config: ProjectConfiguration | None = None,
        gradient_accumulation_plugin: GradientAccumulationPlugin | None = None,
        step_scheduler_with_optimizer: bool = True,
        kwargs_handlers: list[Any] | None = None,
        dynamo_backend: str | DynamoBackend | None = None,
        dynamo_plugin: TorchDynamoPlugin | None = None,
        deepspeed_plugins: Any = None,
        parallelism_config: Any = None,
    ) -> None:
        parallelism_config = resolve_parallelism_options(
            parallelism_config, torch_tp_plugin, megatron_lm_plugin
        )
        self._read_handlers(kwargs_handlers or [])
        self.project_configuration = project_config or ProjectConfiguration(project_dir=project_dir)
        if project_dir is not None and self.project_configuration.project_dir is None:
            self.project_configuration.set_directories(project_dir)
        self.dataloader_config = self._dataloader_config(dataloader_config, split_batches)
        self.log_with = log_with

        if dynamo_backend is not None and dynamo_plugin is not None:
            raise ValueError("pass either dynamo_backend or dynamo_plugin to Accelerator, not both")
        if dynamo_plugin is None:
            dynamo_plugin = (
                TorchDynamoPlugin(backend=dynamo_backend) if dynamo_backend else TorchDynamoPlugin()
            )
        if deepspeed_plugin is not None and deepspeed_plugins is not None:
            raise ValueError(
                "pass either deepspeed_plugin or deepspeed_plugins to Accelerator, not both"
            )
        deepspeed_plugin = deepspeed_plugin if deepspeed_plugin is not None else deepspeed_plugins
        fsdp_requested = fsdp_plugin is not None or env.read_flag(env.USE_FSDP)
        if fsdp_plugin is None and env.read_flag(env.USE_FSDP):
            fsdp_plugin = FullyShardedDataParallelPlugin()
        if (
            fsdp_plugin is None
            and deepspeed_plugin is None
            and parallelism_config is not None
            and (parallelism_config.dp_shard_enabled or parallelism_config.cp_enabled)
        ):
            # dp_shard_size > 1 means FSDP2 over the dp_shard sub-mesh, plugin or not
            fsdp_plugin = FullyShardedDataParallelPlugin()

        init_kwargs = self.init_handler.to_kwargs() if self.init_handler is not None else {}
        cpu = cpu or env.read_flag(env.USE_CPU)
        partial = PartialState(cpu, **init_kwargs)
        device = partial.device
        if mixed_precision is not None:
            mixed_precision = check_mixed_precision(mixed_precision, device)
        elif not AcceleratorState.is_initialized():
            # not given: the first Accelerator takes the launcher's choice (or "no"); a later
            # one shares whatever the first decided, as in Accelerate (spec 004)
            raw, source = read_setting("mixed_precision")
            mixed_precision = check_mixed_precision(
                "no" if raw is None else raw,
                device,
                source or option("mixed_precision").env[0],
            )
        self.state = AcceleratorState(
            mixed_precision=mixed_precision,
            cpu=cpu,
            dynamo_plugin=dynamo_plugin,
            deepspeed_plugin=deepspeed_plugin,
            fsdp_plugin=fsdp_plugin,
            torch_tp_plugin=torch_tp_plugin,
            megatron_lm_plugin=megatron_lm_plugin,
            parallelism_config=parallelism_config,
            _from_accelerator=True,
            **init_kwargs,
        )
        self.gradient_state = GradientState(
            gradient_accumulation_plugin=self._accumulation_plugin(
                gradient_accumulation_plugin, gradient_accumulation_steps
            )
        )
        self.device_placement = device_placement
        self.step_scheduler_with_optimizer = step_scheduler_with_optimizer
        if self.fp8_recipe_handler is not None and self.state.mixed_precision != "fp8":
            raise ValueError(
                "kwargs_handlers holds an FP8RecipeKwargs, but mixed_precision is "
                f"{self.state.mixed_precision!r}; it is used only with mixed_precision='fp8'"
            )
        if self.state.mixed_precision == "fp8" and self.fp8_recipe_handler is None:
            from accel.core.kwargs import FP8RecipeKwargs

            self.fp8_recipe_handler = FP8RecipeKwargs()  # ACCEL_FP8_* from the launcher
        self.native_amp = self.state.mixed_precision in ("fp16", "bf16", "fp8")
        self.scaler = make_grad_scaler(self.state.mixed_precision, self.device, self.scaler_handler)
        self.rng_types = [
            str(RNGType(r)) for r in (rng_types if rng_types is not None else ["generator"])
        ]
        self.step = 0
        self.flag_tensor: torch.Tensor | None = None
        self._models: list[torch.nn.Module] = []
        self._optimizers: list[AcceleratedOptimizer] = []
        self._schedulers: list[AcceleratedScheduler] = []
        self._dataloaders: list[Any] = []
        self._custom_objects: list[Any] = []
        # a later Accelerator in the same process shares the first one's config and mesh
        parallelism_config = parallelism_config or self.state.parallelism_config
        if parallelism_config is not None:
            check_job(
                parallelism_config,
                self.num_processes,
                self.device.type,
                self.distributed_type.value,
                fsdp_requested,
            )
            self.state.device_mesh = parallelism_config.get_device_mesh(self.device.type)
            if torch_tp_plugin is not None:
                torch_tp_plugin.torch_device_mesh = self.state.device_mesh
        # Accelerate's attribute names for the registered state hooks.
        self._save_model_state_pre_hook: OrderedDict[int, Callable[..., None]] = OrderedDict()
        self._load_model_state_pre_hook: OrderedDict[int, Callable[..., None]] = OrderedDict()
        self._checkpoint_writer = AsyncCheckpointWriter()
        prepared = PreparedObjects(
            self._models, self._optimizers, self._schedulers, self._dataloaders
        )
        strategy = chosen_strategy(self.distributed_type)
        if parallelism_config is not None and parallelism_config.tp_enabled:
            strategy = load_strategy("fsdp")  # applies the TP plan (and FSDP2 when sharding)
        self.strategy = strategy(self, prepared)
        if self.strategy.owns_mixed_precision:
            self.native_amp = False
            self.scaler = None

    # -- configuration -------------------------------------------------------------------

    def _read_handlers(self, handlers: list[Any]) -> None:
        for slot in _HANDLER_SLOTS.values():
            setattr(self, slot, None)
        for handler in handlers:
            slot = _HANDLER_SLOTS.get(type(handler).__name__)
            if slot is None:
                raise TypeError(
                    f"kwargs_handlers got {type(handler).__name__}; accepted: "
                    f"{', '.join(_HANDLER_SLOTS)}"
                )
            if getattr(self, slot) is not None:
                raise ValueError(f"kwargs_handlers holds more than one {type(handler).__name__}")
            setattr(self, slot, handler)

    @staticmethod
    def _dataloader_config(
        config: DataLoaderConfiguration | None, split_batches: bool | None
    ) -> DataLoaderConfiguration:
        config = config if config is not None else DataLoaderConfiguration()
        if split_batches is not None:
            config = dataclasses.replace(config)  # never change the caller's object
            if config.split_batches and not split_batches:
                raise ValueError(
                    "split_batches given both to Accelerator and in dataloader_config, with "
                    "different values; set it in dataloader_config only"
                )
            config.split_batches = split_batches
        return config

    @staticmethod
    def _accumulation_plugin(
        plugin: GradientAccumulationPlugin | None, steps: int
    ) -> GradientAccumulationPlugin:
        if plugin is not None:
            if steps != 1:
                raise ValueError(
                    f"gradient_accumulation_steps={steps} and gradient_accumulation_plugin were "
                    "both given; set num_steps in the plugin only"
                )
            if plugin.num_steps is None:
                raise ValueError("GradientAccumulationPlugin(num_steps=...) must be set")
            return plugin
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"gradient_accumulation_steps={steps!r} must be an int >= 1")
        if steps == 1:
            keys = list(option("gradient_accumulation_steps").env)
            steps = env.read_int(keys, 1)
            if steps < 1:
                source = next(k for k in keys if os.environ.get(k, "").strip())
                raise ValueError(f"{source}={os.environ[source]!r} must be an integer >= 1")
        return GradientAccumulationPlugin(num_steps=steps)

    def __repr__(self) -> str:
        return f"Accelerator(distributed_type={self.distributed_type.value}, num_processes={self.num_processes}, device={self.device}, mixed_precision={self.mixed_precision!r})"
