"""``Accelerator``: one object that adapts a PyTorch training loop to the job it runs in."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from accel.core.accelerator_checkpoints import CheckpointingMixin
from accel.core.accelerator_processes import ProcessControlMixin
from accel.core.accelerator_step import TrainingStepMixin
from accel.core.accelerator_tracking import TrackingMixin
from accel.core.checkpoint.async_writer import AsyncCheckpointWriter
from accel.core.compiling import compile_model
from accel.core.device_mesh import check_job, data_parallel_position, local_rank
from accel.core.optimizer import AcceleratedOptimizer
from accel.core.parallelism_config import resolve_parallelism_options
from accel.core.plugins import (
    DataLoaderConfiguration,
    GradientAccumulationPlugin,
    ProjectConfiguration,
    TorchDynamoPlugin,
)
from accel.core.precision import (
    check_mixed_precision,
    make_grad_scaler,
    unwrap_forward,
    wrap_forward_in_autocast,
)
from accel.core.scheduler import AcceleratedScheduler
from accel.core.strategies import PreparedObjects, chosen_strategy, load_strategy
from accel.core.strategies.fsdp_plugin import FullyShardedDataParallelPlugin
from accel.state import (
    AcceleratorState,
    DistributedType,
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


def _has_multi_device_map(model: torch.nn.Module) -> bool:
    device_map = getattr(model, "hf_device_map", None)
    return isinstance(device_map, dict) and len(set(map(str, device_map.values()))) > 1


class Accelerator(ProcessControlMixin, TrainingStepMixin, TrackingMixin, CheckpointingMixin):
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
        if mixed_precision is not None:
            mixed_precision = check_mixed_precision(mixed_precision, partial.device)
        elif not AcceleratorState._shared_state:
            # not given: the first Accelerator takes the launcher's choice (or "no"); a later
            # one shares whatever the first decided, as in Accelerate (spec 004)
            raw, source = read_setting("mixed_precision")
            mixed_precision = check_mixed_precision(
                "no" if raw is None else raw,
                partial.device,
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

    # -- what the job looks like ---------------------------------------------------------

    @property
    def distributed_type(self) -> DistributedType:
        """The kind of job: ``NO``, ``MULTI_CPU``, ``MULTI_GPU``, ``FSDP``, ...

        Example:
            >>> Accelerator().distributed_type  # doctest: +SKIP
            <DistributedType.NO: 'NO'>
        """
        return self.state.distributed_type

    @property
    def num_processes(self) -> int:
        """How many processes run this script.

        Example:
            >>> Accelerator().num_processes  # doctest: +SKIP
            1
        """
        return self.state.num_processes

    @property
    def process_index(self) -> int:
        """This process's index, 0 to ``num_processes - 1``.

        Example:
            >>> Accelerator().process_index  # doctest: +SKIP
            0
        """
        return self.state.process_index

    @property
    def local_process_index(self) -> int:
        """This process's index on its machine.

        Example:
            >>> Accelerator().local_process_index  # doctest: +SKIP
            0
        """
        return self.state.local_process_index

    @property
    def device(self) -> torch.device:
        """The device this process computes on.

        Example:
            >>> Accelerator(cpu=True).device  # doctest: +SKIP
            device(type='cpu')
        """
        return self.state.device

    @property
    def is_main_process(self) -> bool:
        """Whether this is the main process.

        Example:
            >>> Accelerator().is_main_process  # doctest: +SKIP
            True
        """
        return self.state.is_main_process

    @property
    def is_local_main_process(self) -> bool:
        """Whether this is the first process on its machine.

        Example:
            >>> Accelerator().is_local_main_process  # doctest: +SKIP
            True
        """
        return self.state.is_local_main_process

    @property
    def is_last_process(self) -> bool:
        """Whether this is the last process.

        Example:
            >>> Accelerator().is_last_process  # doctest: +SKIP
            True
        """
        return self.state.is_last_process

    @property
    def use_distributed(self) -> bool:
        """Whether more than one process takes part.

        Example:
            >>> Accelerator().use_distributed  # doctest: +SKIP
            False
        """
        return self.state.use_distributed

    @property
    def multi_device(self) -> bool:
        """Whether several processes each drive a device (DDP-style data parallelism).

        Example:
            >>> Accelerator().multi_device  # doctest: +SKIP
            False
        """
        return self.distributed_type.value.startswith("MULTI_") and self.num_processes > 1

    @property
    def mixed_precision(self) -> str:
        """The mixed-precision mode: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"fp8"``.

        Example:
            >>> Accelerator(mixed_precision="bf16").mixed_precision  # doctest: +SKIP
            'bf16'
        """
        return self.state.mixed_precision

    @property
    def is_fsdp2(self) -> bool:
        """Whether models are sharded with FSDP2.

        Example:
            >>> Accelerator().is_fsdp2  # doctest: +SKIP
            False
        """
        return self.state.is_fsdp2

    @property
    def parallelism_config(self) -> Any:
        """The ``parallelism_config`` given to the state (``None`` unless one was passed);
        TRL's ``SFTTrainer`` reads it to decide on context parallelism.

        Example:
            >>> Accelerator().parallelism_config is None  # doctest: +SKIP
            True
        """
        return self.state.parallelism_config

    @property
    def torch_device_mesh(self) -> Any:
        """The DeviceMesh built from ``parallelism_config`` (``None`` without one): named dims
        ``dp_replicate``, ``dp_shard``, ``cp``, ``tp`` (the enabled ones) and the flattened
        ``dp``, ``dp_shard_cp``, ``dp_cp``.

        Example:
            >>> accelerator.torch_device_mesh["tp"].size()  # doctest: +SKIP
            2
        """
        return getattr(self.state, "device_mesh", None)

    @property
    def is_composable_parallelism_enabled(self) -> bool:
        """Whether models are prepared on the device mesh (FSDP2 and/or tensor parallelism).

        Example:
            >>> Accelerator().is_composable_parallelism_enabled  # doctest: +SKIP
            False
        """
        config = self.parallelism_config
        return self.is_fsdp2 or bool(config is not None and config.tp_enabled)

    def _mesh_rank(self, dim: str, what: str) -> int:
        config = self.parallelism_config
        if config is None:
            raise RuntimeError(
                f"{what} is only defined with a parallelism_config: pass "
                "Accelerator(parallelism_config=ParallelismConfig(...)) first"
            )
        return local_rank(self.torch_device_mesh, dim, config._sizes[dim] > 1)

    @property
    def data_parallel_rank(self) -> int:
        """This process's index along ``dp_replicate`` (0 when that dimension is off).

        Example:
            >>> accelerator.data_parallel_rank  # doctest: +SKIP
            0
        """
        return self._mesh_rank("dp_replicate", "data_parallel_rank")

    @property
    def data_parallel_shard_rank(self) -> int:
        """This process's index along ``dp_shard`` (0 when that dimension is off).

        Example:
            >>> accelerator.data_parallel_shard_rank  # doctest: +SKIP
            1
        """
        return self._mesh_rank("dp_shard", "data_parallel_shard_rank")

    @property
    def tensor_parallel_rank(self) -> int:
        """This process's index along ``tp`` (0 when tensor parallelism is off).

        Example:
            >>> accelerator.tensor_parallel_rank  # doctest: +SKIP
            1
        """
        return self._mesh_rank("tp", "tensor_parallel_rank")

    @property
    def context_parallel_rank(self) -> int:
        """This process's index along ``cp`` (0 when context parallelism is off).

        Example:
            >>> accelerator.context_parallel_rank  # doctest: +SKIP
            0
        """
        return self._mesh_rank("cp", "context_parallel_rank")

    def maybe_context_parallel(
        self,
        buffers: list[torch.Tensor] | None = None,
        buffer_seq_dims: list[int] | None = None,
        no_restore_buffers: set[torch.Tensor] | None = None,
    ) -> contextlib.AbstractContextManager[Any]:
        """Inside, ``buffers`` are split along ``buffer_seq_dims`` over the ``cp`` mesh
        dimension and attention runs as ring attention; a no-op without context parallelism.

        Example:
            >>> with accelerator.maybe_context_parallel([ids, labels], [1, 1], {ids, labels}):  # doctest: +SKIP
            ...     loss = model(ids, labels=labels).loss
        """
        from accel.core.context_parallel import context_parallel_region

        return context_parallel_region(
            self.parallelism_config, self.torch_device_mesh, buffers, buffer_seq_dims,
            no_restore_buffers,
        )  # fmt: skip

    def deepspeed_ulysses_dl_adapter(self, dl: Any, model: Any = None) -> Any:
        """``dl`` (prepared before the model) wrapped for DeepSpeed Ulysses sequence
        parallelism; ``dl`` itself when ``sp_size`` is 1. transformers' Trainer calls it.

        Example:
            >>> loader = [1, 2]
            >>> Accelerator().deepspeed_ulysses_dl_adapter(loader) is loader
            True
        """
        config = self.parallelism_config
        if config is None or not config.sp_enabled:
            return dl
        return self.strategy.ulysses_loader(dl)  # type: ignore[attr-defined]

    @property
    def split_batches(self) -> bool:
        """Whether each batch of a prepared dataloader is split across processes.

        Example:
            >>> Accelerator().split_batches  # doctest: +SKIP
            False
        """
        return self.dataloader_config.split_batches

    @property
    def dispatch_batches(self) -> bool | None:
        """Whether process 0 reads batches and sends each process its part.

        Example:
            >>> Accelerator().dispatch_batches is None  # doctest: +SKIP
            True
        """
        return self.dataloader_config.dispatch_batches

    @property
    def even_batches(self) -> bool:
        """Whether every process gets the same number of batches (wrapping around).

        Example:
            >>> Accelerator().even_batches  # doctest: +SKIP
            True
        """
        return self.dataloader_config.even_batches

    @even_batches.setter
    def even_batches(self, value: bool) -> None:
        self.dataloader_config.even_batches = value

    @property
    def use_seedable_sampler(self) -> bool:
        """Whether shuffling samplers are replaced by a seedable one.

        Example:
            >>> Accelerator().use_seedable_sampler  # doctest: +SKIP
            False
        """
        return self.dataloader_config.use_seedable_sampler

    @property
    def non_blocking(self) -> bool:
        """Whether batches move to the device with ``non_blocking=True``.

        Example:
            >>> Accelerator().non_blocking  # doctest: +SKIP
            False
        """
        return self.dataloader_config.non_blocking

    @property
    def use_stateful_dataloader(self) -> bool:
        """Whether dataloaders are made stateful (torchdata).

        Example:
            >>> Accelerator().use_stateful_dataloader  # doctest: +SKIP
            False
        """
        return self.dataloader_config.use_stateful_dataloader

    @property
    def project_dir(self) -> str | None:
        """The project folder (checkpoints, logs).

        Example:
            >>> Accelerator(project_dir="runs").project_dir  # doctest: +SKIP
            'runs'
        """
        return self.project_configuration.project_dir

    @property
    def logging_dir(self) -> str | None:
        """Where trackers write logs.

        Example:
            >>> Accelerator(project_dir="runs").logging_dir  # doctest: +SKIP
            'runs'
        """
        return self.project_configuration.logging_dir

    @property
    def save_iteration(self) -> int:
        """The number of the next automatically named checkpoint.

        Example:
            >>> Accelerator().save_iteration  # doctest: +SKIP
            0
        """
        return self.project_configuration.iteration

    @property
    def sync_gradients(self) -> bool:
        """Whether gradients are synchronized (and optimizers step) on this step.

        Example:
            >>> Accelerator().sync_gradients  # doctest: +SKIP
            True
        """
        return self.gradient_state.sync_gradients

    @sync_gradients.setter
    def sync_gradients(self, value: bool) -> None:
        self.gradient_state.sync_gradients = value

    @property
    def gradient_accumulation_steps(self) -> int:
        """How many steps gradients accumulate over.

        Example:
            >>> Accelerator(gradient_accumulation_steps=4).gradient_accumulation_steps  # doctest: +SKIP
            4
        """
        return self.gradient_state.num_steps

    @gradient_accumulation_steps.setter
    def gradient_accumulation_steps(self, steps: int) -> None:
        self.gradient_state.plugin_kwargs.update({"num_steps": steps})

    @property
    def optimizer_step_was_skipped(self) -> bool:
        """Whether any optimizer skipped its last step (fp16 overflow).

        Example:
            >>> Accelerator().optimizer_step_was_skipped  # doctest: +SKIP
            False
        """
        return any(opt.step_was_skipped for opt in self._optimizers)

    # -- prepare -------------------------------------------------------------------------

    def prepare(self, *args: Any, device_placement: list[bool] | None = None) -> Any:
        """Adapt models, optimizers, dataloaders and schedulers to this job; same order back.

        Models go to the device (and into DDP or FSDP2 when several processes run, with an
        autocast forward under mixed precision); optimizers and schedulers are wrapped so they
        follow gradient accumulation; dataloaders are sharded across processes and put
        batches on the device. Other objects come back unchanged.

        Example:
            >>> model, optimizer, loader = accelerator.prepare(model, optimizer, loader)  # doctest: +SKIP
        """
        if device_placement is None:
            placements: list[bool | None] = [None] * len(args)
        elif len(device_placement) != len(args):
            raise ValueError(
                f"device_placement has {len(device_placement)} entries but prepare() got "
                f"{len(args)} objects; give one bool per object"
            )
        else:
            placements = list(device_placement)
        for obj in args:
            if (
                isinstance(obj, torch.nn.Module)
                and self.use_distributed
                and _has_multi_device_map(obj)
            ):
                raise ValueError(
                    f"{type(obj).__name__} was loaded with a device_map spanning several devices "
                    f"({sorted(set(map(str, obj.hf_device_map.values())))}); such a model cannot be "
                    "trained with several processes. Run one process (python script.py), or load "
                    "the model on one device per process (device_map={'': accelerator.device})"
                )
        result = self.strategy.prepare(list(args), placements)
        self._record(result)
        try:
            self._check_optimizers_match_models(result)
        except ValueError:
            self._forget(result)
            raise
        for item in result:
            if any(item is known for known in self._all_prepared()):
                with contextlib.suppress(AttributeError):
                    item._is_accelerate_prepared = True
        return tuple(result) if len(result) > 1 else result[0]

    def _forget(self, objects: list[Any]) -> None:
        for registry in (self._models, self._optimizers, self._schedulers, self._dataloaders):
            registry[:] = [known for known in registry if not any(known is o for o in objects)]

    def _record(self, result: list[Any]) -> None:
        """Hold the models, optimizers and schedulers a strategy returned (built itself, e.g.
        a DeepSpeed engine) that no ``prepare_*`` call recorded."""
        for obj in result:
            if isinstance(obj, torch.nn.Module):
                registry: list[Any] = self._models
            elif isinstance(obj, AcceleratedOptimizer):
                registry = self._optimizers
            elif isinstance(obj, AcceleratedScheduler):
                registry = self._schedulers
            else:
                continue
            if not any(obj is known for known in registry):
                registry.append(obj)

    def _all_prepared(self) -> Iterator[Any]:
        yield from self._models
        yield from self._optimizers
        yield from self._schedulers
        yield from self._dataloaders

    def _check_optimizers_match_models(self, result: list[Any]) -> None:
        if not self._models:
            return
        owned = {id(p) for model in self._models for p in model.parameters()}
        for obj in result:
            if not isinstance(obj, AcceleratedOptimizer) or not obj.holds_model_parameters:
                continue
            params = [p for group in obj.param_groups for p in group["params"]]
            if params and not any(id(p) in owned for p in params):
                raise ValueError(
                    f"the optimizer {type(obj.optimizer).__name__} holds {len(params)} parameters, "
                    "none of which belongs to a model passed to prepare(); create the optimizer "
                    "from the parameters of the model you prepare (e.g. "
                    "torch.optim.AdamW(model.parameters())) and pass both to prepare()"
                )

    def prepare_model(
        self,
        model: torch.nn.Module,
        device_placement: bool | None = None,
        evaluation_mode: bool = False,
    ) -> torch.nn.Module:
        """Prepare one model: device, mixed-precision forward, compile, DDP (unless evaluating).

        Example:
            >>> model = accelerator.prepare_model(model)  # doctest: +SKIP
        """
        if getattr(model, "_is_accelerate_prepared", False):
            if model not in self._models:
                self._models.append(model)
            return model
        if device_placement is None:
            device_placement = self.device_placement
        if self.mixed_precision == "fp8" and not self.strategy.owns_mixed_precision:
            from accel.core.fp8 import convert_to_fp8

            model = convert_to_fp8(model, self.fp8_recipe_handler)
        if self.native_amp:
            wrap_forward_in_autocast(
                model, self.mixed_precision, self.device, self.autocast_handler
            )
        if device_placement and not _has_multi_device_map(model):
            model = model.to(self.device)
        if not evaluation_mode:
            model = self.strategy.wrap_model(model)
        dynamo = self.state.dynamo_plugin
        if dynamo is not None and dynamo.backend != DynamoBackend.NO:
            model = compile_model(model, dynamo)
        self._models.append(model)
        return model

    def prepare_optimizer(
        self, optimizer: torch.optim.Optimizer, device_placement: bool | None = None
    ) -> AcceleratedOptimizer:
        """Wrap an optimizer so it follows gradient accumulation and the fp16 scaler.

        Example:
            >>> optimizer = accelerator.prepare_optimizer(optimizer)  # doctest: +SKIP
        """
        if isinstance(optimizer, AcceleratedOptimizer):
            if optimizer not in self._optimizers:
                self._optimizers.append(optimizer)
            return optimizer
        if device_placement is None:
            device_placement = self.device_placement
        wrapped = AcceleratedOptimizer(
            optimizer, device_placement=device_placement, scaler=self.scaler, device=self.device
        )
        wrapped = self.strategy.wrap_optimizer(wrapped)
        self._optimizers.append(wrapped)
        return wrapped

    def prepare_scheduler(self, scheduler: Any) -> AcceleratedScheduler:
        """Wrap a learning-rate scheduler so it steps with the optimizer's real steps.

        Example:
            >>> scheduler = accelerator.prepare_scheduler(scheduler)  # doctest: +SKIP
        """
        if isinstance(scheduler, AcceleratedScheduler):
            return scheduler
        inner = getattr(scheduler, "optimizer", None)
        optimizers: list[Any] = [o for o in self._optimizers if o.optimizer is inner or o is inner]
        wrapped = AcceleratedScheduler(
            scheduler,
            optimizers or self._optimizers,
            step_with_optimizer=self.step_scheduler_with_optimizer,
            split_batches=self.split_batches,
        )
        self._schedulers.append(wrapped)
        return wrapped

    def prepare_data_loader(
        self,
        data_loader: torch.utils.data.DataLoader,
        device_placement: bool | None = None,
        slice_fn_for_dispatch: Callable[..., Any] | None = None,
    ) -> Any:
        """Shard a dataloader across processes and have it put batches on the device.

        Example:
            >>> loader = accelerator.prepare_data_loader(loader)  # doctest: +SKIP
        """
        from accel.core.data import prepare_data_loader

        if getattr(data_loader, "_is_accelerate_prepared", False):
            if data_loader not in self._dataloaders:
                self._dataloaders.append(data_loader)
            return data_loader
        if device_placement is None:
            device_placement = self.device_placement
        config = self.dataloader_config
        # ranks of one tensor/context parallel group read the same batches
        position = data_parallel_position(self.parallelism_config, self.torch_device_mesh)
        num_shards, shard = position or (self.num_processes, self.process_index)
        if position is not None and config.dispatch_batches:
            raise ValueError(
                "DataLoaderConfiguration(dispatch_batches=True) is not supported with tensor/"
                "context parallelism (parallelism_config tp_size/cp_size > 1): the main process "
                "would split each batch over every process instead of over the data-parallel "
                "groups; leave dispatch_batches unset"
            )
        prepared = prepare_data_loader(
            data_loader,
            self.device,
            num_processes=num_shards,
            process_index=shard,
            split_batches=config.split_batches,
            put_on_device=device_placement,
            rng_types=list(self.rng_types),
            dispatch_batches=config.dispatch_batches,
            even_batches=config.even_batches,
            slice_fn_for_dispatch=slice_fn_for_dispatch,
            use_seedable_sampler=config.use_seedable_sampler,
            data_seed=config.data_seed,
            non_blocking=config.non_blocking,
            use_stateful_dataloader=config.use_stateful_dataloader,
        )
        prepared = self.strategy.wrap_dataloader(prepared)
        self._dataloaders.append(prepared)
        return prepared

    # -- models --------------------------------------------------------------------------

    def unwrap_model(
        self,
        model: torch.nn.Module,
        keep_fp32_wrapper: bool = True,
        keep_torch_compile: bool = True,
    ) -> torch.nn.Module:
        """The user's model without DDP/compile wrappers (optionally without the fp32 forward).

        Example:
            >>> plain = accelerator.unwrap_model(model)  # doctest: +SKIP
        """
        compiled = model if hasattr(model, "_orig_mod") else None
        inner = model._orig_mod if compiled is not None else model
        inner = self.strategy.unwrap_model(inner)
        if not keep_fp32_wrapper:
            unwrap_forward(inner)
        if compiled is not None and keep_torch_compile:
            return compiled
        return inner

    def get_state_dict(
        self, model: torch.nn.Module, unwrap: bool = True
    ) -> dict[str, torch.Tensor]:
        """The model's full state dict (gathered from all shards under FSDP; call on every process).

        Example:
            >>> state = accelerator.get_state_dict(model)  # doctest: +SKIP
        """
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        if not unwrap:
            return model.state_dict()
        return self.strategy.state_dict(model)

    def skip_first_batches(self, dataloader: Any, num_batches: int = 0) -> Any:
        """A dataloader that starts after ``num_batches`` batches (for resuming mid-epoch).

        Example:
            >>> loader = accelerator.skip_first_batches(loader, 100)  # doctest: +SKIP
        """
        from accel.core.data import skip_first_batches

        return skip_first_batches(dataloader, num_batches=num_batches)

    def free_memory(self, *objects: Any) -> list[None]:
        """Drop the accelerator's references to prepared objects and free cached memory.

        Returns ``None`` for each object passed, to reassign: ``a, b = free_memory(a, b)``.

        Example:
            >>> model, optimizer = accelerator.free_memory(model, optimizer)  # doctest: +SKIP
        """
        self._models.clear()
        self._optimizers.clear()
        self._schedulers.clear()
        self._dataloaders.clear()
        self.step = 0
        gc.collect()
        for name in ("cuda", "xpu", "npu", "mps"):
            module = getattr(torch, name, None)
            if module is not None and hasattr(module, "empty_cache") and module.is_available():
                module.empty_cache()
        return [None for _ in objects]

    def clear(self, *objects: Any) -> list[None]:
        """Alias of :meth:`free_memory`.

        Example:
            >>> model = accelerator.clear(model)  # doctest: +SKIP
        """
        return self.free_memory(*objects)

    def verify_device_map(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` was loaded with a device map spanning several devices.

        Example:
            >>> accelerator.verify_device_map(torch.nn.Linear(1, 1))  # doctest: +SKIP
            False
        """
        return _has_multi_device_map(model)

    def __repr__(self) -> str:
        return f"Accelerator(distributed_type={self.distributed_type.value}, num_processes={self.num_processes}, device={self.device}, mixed_precision={self.mixed_precision!r})"
