"""``Accelerator``: one object that adapts a PyTorch training loop to the job it runs in."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch

from accel.core.checkpoint import hooks as checkpoint_hooks
from accel.core.checkpoint import state as checkpoint_state
from accel.core.checkpoint.async_writer import AsyncCheckpointWriter
from accel.core.checkpoint.context import CheckpointContext
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
    autocast_context,
    check_mixed_precision,
    make_grad_scaler,
    unwrap_forward,
    wrap_forward_in_autocast,
)
from accel.core.scheduler import AcceleratedScheduler
from accel.core.strategies import PreparedObjects, chosen_strategy, load_strategy
from accel.core.strategies.fsdp_plugin import FullyShardedDataParallelPlugin
from accel.ops import gather as _gather
from accel.ops import gather_object, pad_across_processes, recursively_apply
from accel.ops import reduce as _reduce
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

F = TypeVar("F", bound=Callable[..., Any])

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


class Accelerator:
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

    # -- process control -----------------------------------------------------------------

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` once per machine.

        Example:
            >>> accelerator.print("epoch done")  # doctest: +SKIP
        """
        self.state.print(*args, **kwargs)

    def wait_for_everyone(self) -> None:
        """Block until every process reaches this call.

        Example:
            >>> accelerator.wait_for_everyone()  # doctest: +SKIP
        """
        self.state.wait_for_everyone()

    def main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on the main process first, then on the others.

        Example:
            >>> with accelerator.main_process_first():  # doctest: +SKIP
            ...     dataset = build_dataset()
        """
        return PartialState().main_process_first()

    def local_main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on each machine's first process first, then on its others.

        Example:
            >>> with accelerator.local_main_process_first():  # doctest: +SKIP
            ...     dataset = build_dataset()
        """
        return PartialState().local_main_process_first()

    def split_between_processes(
        self, inputs: Any, apply_padding: bool = False
    ) -> contextlib.AbstractContextManager[Any]:
        """This process's share of ``inputs`` (see ``PartialState.split_between_processes``).

        Example:
            >>> with accelerator.split_between_processes(prompts) as mine:  # doctest: +SKIP
            ...     outputs = [generate(p) for p in mine]
        """
        return PartialState().split_between_processes(inputs, apply_padding=apply_padding)

    def on_main_process(self, function: F | None = None) -> F:
        """Decorator: run only on the main process.

        Example:
            >>> @accelerator.on_main_process  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_main_process(function)

    def on_local_main_process(self, function: F | None = None) -> F:
        """Decorator: run only on each machine's first process.

        Example:
            >>> @accelerator.on_local_main_process  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_local_main_process(function)

    def on_last_process(self, function: F) -> F:
        """Decorator: run only on the last process.

        Example:
            >>> @accelerator.on_last_process  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_last_process(function)

    def on_process(self, function: F | None = None, process_index: int | None = None) -> F:
        """Decorator: run only on process ``process_index``.

        Example:
            >>> @accelerator.on_process(process_index=1)  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_process(function, process_index=process_index)

    def on_local_process(
        self, function: F | None = None, local_process_index: int | None = None
    ) -> F:
        """Decorator: run only on the process with this index on each machine.

        Example:
            >>> @accelerator.on_local_process(local_process_index=0)  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_local_process(function, local_process_index=local_process_index)

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

    # -- the training step ---------------------------------------------------------------

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Use instead of ``loss.backward()``: scales for accumulation and fp16, then backward.

        Example:
            >>> accelerator.backward(loss)  # doctest: +SKIP
        """
        steps = self.gradient_accumulation_steps
        # Dividing by 1 changes nothing but costs an op and an autograd node per step.
        if steps != 1 and not getattr(self.strategy, "scales_loss_for_accumulation", False):
            loss = loss / steps
        if self.scaler is not None:
            self.scaler.scale(loss).backward(**kwargs)
        else:
            self.strategy.backward(loss, **kwargs)

    def _do_sync(self) -> None:
        state = self.gradient_state
        if state.sync_with_dataloader and state.end_of_dataloader:
            self.step = 0
            state._set_sync_gradients(True)
        else:
            self.step += 1
            state._set_sync_gradients(self.step % state.num_steps == 0)

    @contextlib.contextmanager
    def accumulate(self, *models: torch.nn.Module) -> Iterator[None]:
        """Accumulate gradients: inside, backward passes of non-final steps skip synchronization.

        Optimizers and schedulers prepared by this accelerator step only on the last step of
        each group of ``gradient_accumulation_steps`` (and at the end of the dataloader).

        Example:
            >>> for batch in loader:  # doctest: +SKIP
            ...     with accelerator.accumulate(model):
            ...         accelerator.backward(model(batch).mean())
            ...         optimizer.step(); optimizer.zero_grad()
        """
        self._do_sync()
        allow_sync = self.sync_gradients or (
            self.use_distributed and self.gradient_state.plugin_kwargs.get("sync_each_batch", False)
        )
        if allow_sync:  # the common case: nothing to enter
            yield
            return
        with contextlib.ExitStack() as stack:
            for model in models:
                stack.enter_context(self.no_sync(model))
            yield

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """A context in which backward passes do not synchronize ``model``'s gradients.

        Example:
            >>> with accelerator.no_sync(model):  # doctest: +SKIP
            ...     accelerator.backward(loss)
        """
        if not self.use_distributed:
            return contextlib.nullcontext()
        return self.strategy.no_sync(model)

    @staticmethod
    @contextlib.contextmanager
    def trigger_sync_in_backward(model: torch.nn.Module) -> Iterator[None]:
        """Force the next backward of a DDP model to synchronize, even inside ``no_sync``.

        Example:
            >>> with accelerator.trigger_sync_in_backward(model):  # doctest: +SKIP
            ...     accelerator.backward(loss)
        """
        from torch.nn.parallel import DistributedDataParallel

        if not isinstance(model, DistributedDataParallel):
            yield
            return
        saved = (model.require_backward_grad_sync, model.require_forward_param_sync)
        model.require_backward_grad_sync = True
        model.require_forward_param_sync = True
        model.reducer.prepare_for_backward([])
        try:
            yield
        finally:
            model.require_backward_grad_sync, model.require_forward_param_sync = saved

    def unscale_gradients(self, optimizer: Any = None) -> None:
        """Divide fp16 gradients by the loss scale (before clipping or inspecting them).

        Example:
            >>> accelerator.unscale_gradients()  # doctest: +SKIP
        """
        if self.scaler is None or not self.sync_gradients:
            return
        targets = self._optimizers if optimizer is None else optimizer
        if not isinstance(targets, (list, tuple)):
            targets = [targets]
        for opt in targets:
            inner = opt.optimizer if isinstance(opt, AcceleratedOptimizer) else opt
            self.scaler.unscale_(inner)

    def clip_grad_norm_(
        self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2
    ) -> torch.Tensor:
        """Clip the gradients' total norm to ``max_norm`` (unscaling fp16 first); returns the norm.

        Example:
            >>> norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)  # doctest: +SKIP
        """
        self.unscale_gradients()
        return self.strategy.clip_grad_norm_(parameters, max_norm, norm_type=norm_type)

    def clip_grad_value_(self, parameters: Iterable[torch.nn.Parameter], clip_value: float) -> None:
        """Clip every gradient element to ``[-clip_value, clip_value]`` (unscaling fp16 first).

        Example:
            >>> accelerator.clip_grad_value_(model.parameters(), 0.5)  # doctest: +SKIP
        """
        self.unscale_gradients()
        torch.nn.utils.clip_grad_value_(parameters, clip_value)

    def autocast(self, autocast_handler: Any = None) -> contextlib.AbstractContextManager[Any]:
        """Autocast for the configured mixed precision (a no-op without one).

        Example:
            >>> with accelerator.autocast():  # doctest: +SKIP
            ...     loss = loss_fn(model(x), y)
        """
        handler = autocast_handler if autocast_handler is not None else self.autocast_handler
        return autocast_context(self.mixed_precision, self.device, handler)

    # -- communication -------------------------------------------------------------------

    def gather(self, tensor: Any) -> Any:
        """Gather tensors from all processes (see ``accel.ops.gather``).

        Example:
            >>> accelerator.gather(torch.tensor([accelerator.process_index]))  # doctest: +SKIP
            tensor([0, 1])
        """
        return _gather(tensor)

    def gather_for_metrics(self, input_data: Any, use_gather_object: bool = False) -> Any:
        """Gather for evaluation, dropping the samples repeated to even out the last batch.

        Non-tensor data (or ``use_gather_object=True``) goes through ``gather_object``.

        Example:
            >>> preds = accelerator.gather_for_metrics(logits.argmax(-1))  # doctest: +SKIP
        """
        try:
            recursively_apply(lambda x: x, input_data, error_on_other_type=True)
            all_tensors = True
        except TypeError:
            all_tensors = False
        use_gather_object = use_gather_object or not all_tensors
        copies = data_parallel_position(self.parallelism_config, self.torch_device_mesh)
        if copies is not None:
            from accel.core.mesh_gather import gather_data_parallel

            data = gather_data_parallel(input_data, self.parallelism_config, use_gather_object)
        elif use_gather_object:
            data = gather_object(input_data)
        else:
            data = self.gather(input_data)
        state = self.gradient_state
        if not state.end_of_dataloader or state.remainder <= 0:
            return data
        keep = state.remainder
        if use_gather_object:
            return data[:keep]
        return recursively_apply(lambda t: t[:keep], data)

    def reduce(self, tensor: Any, reduction: str = "sum", scale: float = 1.0) -> Any:
        """Reduce tensors across processes (default ``"sum"``; see ``accel.ops.reduce``).

        Example:
            >>> accelerator.reduce(torch.tensor(1.0))  # doctest: +SKIP
            tensor(2.)
        """
        return _reduce(tensor, reduction=reduction, scale=scale)

    def pad_across_processes(
        self, tensor: Any, dim: int = 0, pad_index: int = 0, pad_first: bool = False
    ) -> Any:
        """Pad tensors to the largest size across processes (see ``accel.ops``).

        Example:
            >>> accelerator.pad_across_processes(tokens, dim=1, pad_index=0)  # doctest: +SKIP
        """
        return pad_across_processes(tensor, dim=dim, pad_index=pad_index, pad_first=pad_first)

    def set_trigger(self) -> None:
        """Raise a flag on this process, for :meth:`check_trigger` on all processes.

        Example:
            >>> if loss.isnan(): accelerator.set_trigger()  # doctest: +SKIP
        """
        self.flag_tensor = torch.tensor(1, device=self.device)

    def check_trigger(self) -> bool:
        """Whether any process called :meth:`set_trigger` since the last check; resets it.

        Every process must call it (it is a collective).

        Example:
            >>> if accelerator.check_trigger(): break  # doctest: +SKIP
        """
        flag = (
            self.flag_tensor
            if self.flag_tensor is not None
            else torch.tensor(0, device=self.device)
        )
        fired = bool(self.reduce(flag, reduction="sum").item() >= 1)
        if fired:
            self.flag_tensor = torch.tensor(0, device=self.device)
        return fired

    @contextlib.contextmanager
    def join_uneven_inputs(
        self, joinables: list[Any], even_batches: bool | None = None
    ) -> Iterator[None]:
        """Let DDP processes with fewer batches finish without hanging (``torch`` ``Join``).

        ``even_batches`` temporarily overrides the prepared dataloaders' setting.

        Example:
            >>> with accelerator.join_uneven_inputs([model], even_batches=False):  # doctest: +SKIP
            ...     for batch in loader: ...
        """
        if not self.multi_device:
            yield
            return
        from torch.distributed.algorithms.join import Join

        saved = []
        if even_batches is not None:
            for loader in self._dataloaders:
                sampler = getattr(loader, "batch_sampler", None)
                if hasattr(sampler, "even_batches"):
                    saved.append((sampler, sampler.even_batches))
                    sampler.even_batches = even_batches
        try:
            with Join(joinables):
                yield
        finally:
            for sampler, value in saved:
                sampler.even_batches = value

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

    # -- saving --------------------------------------------------------------------------

    def save(self, obj: Any, f: Any, safe_serialization: bool = False) -> None:
        """Save ``obj`` to ``f`` from the main process only (atomically); use for ``torch.save``.

        With ``ProjectConfiguration(save_on_each_node=True)``, once per node instead.

        Example:
            >>> accelerator.save({"step": 10}, "extra.pt")  # doctest: +SKIP
        """
        from accel.core.saving import save

        save(
            obj,
            f,
            save_on_each_node=self.project_configuration.save_on_each_node,
            safe_serialization=safe_serialization,
        )

    def save_model(
        self,
        model: torch.nn.Module,
        save_directory: str | os.PathLike[str],
        max_shard_size: int | str = "10GB",
        safe_serialization: bool = True,
    ) -> None:
        """Write the model's weights as (sharded) safetensors, or ``.bin`` files, with an index.

        Call on every process (the state dict is gathered first); the main process writes.

        Example:
            >>> accelerator.save_model(model, "out", max_shard_size="1GB")  # doctest: +SKIP
        """
        from accel.core.saving import save_model

        save_model(self, model, save_directory, max_shard_size, safe_serialization)

    # -- experiment tracking -------------------------------------------------------------

    @property
    def trackers(self) -> list[Any]:
        """The trackers started by :meth:`init_trackers`.

        Example:
            >>> accelerator.trackers  # doctest: +SKIP
            []
        """
        return self.__dict__.setdefault("_trackers", [])

    def init_trackers(
        self,
        project_name: str,
        config: dict[str, Any] | None = None,
        init_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Start a run named ``project_name`` on every tracker in ``log_with``.

        ``config`` is stored as the run's hyperparameters; ``init_kwargs`` maps tracker names
        to keyword arguments for their constructors. Like Accelerate, only the main process
        creates trackers; elsewhere this does nothing and ``get_tracker`` returns a blank one.

        Example:
            >>> accelerator = Accelerator(log_with="jsonl", project_dir="runs")  # doctest: +SKIP
            >>> accelerator.init_trackers("exp1", config={"lr": 1e-3})  # doctest: +SKIP
        """
        from accel.core.tracking import LOGGER_TYPE_TO_CLASS, filter_trackers

        if not self.is_main_process:
            return
        init_kwargs = init_kwargs or {}
        started = []
        for entry in filter_trackers(self.log_with, self.logging_dir):
            if not isinstance(entry, str):
                started.append(entry)
                continue
            cls = LOGGER_TYPE_TO_CLASS[entry]
            options = dict(init_kwargs.get(entry, {}))
            if cls.requires_logging_directory:
                directory = options.pop("logging_dir", self.logging_dir)  # init_kwargs may override
                started.append(cls(project_name, directory, **options))
            else:
                started.append(cls(project_name, **options))
        for index, tracker in enumerate(started):
            try:
                tracker.start()
            except BaseException:
                for done in started[:index]:  # e.g. stop a wandb service already running
                    done.finish()
                raise
        if config is not None:
            for tracker in started:
                tracker.store_init_configuration(config)
        self.trackers.extend(started)

    def get_tracker(self, name: str, unwrap: bool = False) -> Any:
        """The tracker called ``name`` (its underlying run/writer object with ``unwrap=True``).

        Example:
            >>> accelerator.get_tracker("jsonl")  # doctest: +SKIP
        """
        from accel.core.tracking import GeneralTracker

        if not self.trackers:
            return GeneralTracker(_blank=True)
        for tracker in self.trackers:
            if tracker.name == name:
                return tracker.tracker if unwrap else tracker
        names = [t.name for t in self.trackers]
        raise ValueError(f"get_tracker: no tracker named {name!r}; started trackers: {names}")

    def log(
        self,
        values: dict[str, Any],
        step: int | None = None,
        log_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Log ``values`` at ``step`` to every tracker (main process only).

        Example:
            >>> accelerator.log({"loss": 0.25}, step=100)  # doctest: +SKIP
        """
        if not self.is_main_process:
            return
        log_kwargs = log_kwargs or {}
        for tracker in self.trackers:
            tracker.log(values, step=step, **log_kwargs.get(tracker.name, {}))

    def end_training(self) -> None:
        """Finish every tracker and tear down the process group; call at the end of a script.

        Example:
            >>> accelerator.end_training()  # doctest: +SKIP
        """
        self.wait_for_checkpoint()
        failures = []
        for tracker in self.trackers:  # every tracker gets to finish, even after a failure
            try:
                tracker.finish()
            except Exception as error:
                failures.append((tracker, error))
        self.state.destroy_process_group()
        if failures:
            names = ", ".join(
                f"{getattr(t, 'name', type(t).__name__)} ({e!r})" for t, e in failures
            )
            first = failures[0][1]
            raise RuntimeError(f"end_training: finishing trackers failed: {names}") from first

    # -- checkpoints (logic in accel.core.checkpoint) ------------------------------------

    def _checkpoint_context(self) -> CheckpointContext:
        """What the strategy's checkpoint hooks save or restore, passed to them explicitly."""
        config = self.project_configuration
        return CheckpointContext(
            models=self._models,
            optimizers=self._optimizers,
            schedulers=self._schedulers,
            dataloaders=self._dataloaders,
            custom_objects=self._custom_objects,
            scaler=self.scaler,
            step=self.step,
            process_index=self.process_index,
            num_processes=self.num_processes,
            writes_shared_files=(
                self.is_local_main_process if config.save_on_each_node else self.is_main_process
            ),
            device=self.device,
            unwrap_model=self.unwrap_model,
            accumulation_steps=self.gradient_state.num_steps,
            save_pre_hooks=list(self._save_model_state_pre_hook.values()),
            load_pre_hooks=list(self._load_model_state_pre_hook.values()),
        )

    def save_state(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        safe_serialization: bool = True,
        async_save: bool = False,
        **save_model_func_kwargs: Any,
    ) -> str:
        """Save models, optimizers, schedulers, scaler, RNG states and registered objects.

        Writes Accelerate's folder layout into a hidden temporary folder and renames it into
        place once every process is done, so a crash never leaves a half checkpoint. With
        ``ProjectConfiguration(automatic_checkpoint_naming=True)`` the folder is
        ``project_dir/checkpoints/checkpoint_<iteration>`` and at most ``total_limit``
        complete checkpoints are kept. Returns the folder.

        With ``async_save=True`` the call returns once the state is copied to CPU memory
        (kept and reused for the next save); the files are written in the background and the
        folder appears when they are on disk. :meth:`wait_for_checkpoint` waits for that (so
        do the next ``save_state``, ``load_state``, ``end_training`` and interpreter exit).

        Example:
            >>> accelerator.save_state("ckpt")  # doctest: +SKIP
            '/abs/path/ckpt'
            >>> accelerator.save_state("ckpt2", async_save=True)  # doctest: +SKIP
        """
        self.wait_for_checkpoint()  # one save in flight at most, in order
        checkpoint_state.check_supported(self.distributed_type, "save_state")
        return checkpoint_state.save_state(
            self.strategy,
            self._checkpoint_context(),
            self.project_configuration,
            self._checkpoint_writer,
            output_dir,
            safe_serialization,
            async_save=async_save,
        )

    def wait_for_checkpoint(self) -> None:
        """Wait until the ``save_state(async_save=True)`` in flight is on disk and published.

        Raises :class:`~accel.core.checkpoint.async_writer.CheckpointWriteError` if writing it failed
        (the previous complete checkpoint is left intact). Does nothing when no save is in
        flight.

        Example:
            >>> accelerator.save_state(async_save=True)  # doctest: +SKIP
            >>> accelerator.wait_for_checkpoint()  # doctest: +SKIP
        """
        self._checkpoint_writer.wait()

    def load_state(
        self,
        input_dir: str | os.PathLike[str] | None = None,
        load_kwargs: dict[str, Any] | None = None,
        **load_model_func_kwargs: Any,
    ) -> str:
        """Restore what :meth:`save_state` saved (also folders written by Accelerate).

        Without ``input_dir`` (automatic checkpoint naming), loads the newest complete
        checkpoint. Files are loaded without running code (safetensors, or
        ``torch.load(weights_only=True)``). Returns the folder loaded.

        Example:
            >>> accelerator.load_state("ckpt")  # doctest: +SKIP
            '/abs/path/ckpt'
        """
        self.wait_for_checkpoint()  # the save in flight may be the one to load
        checkpoint_state.check_supported(self.distributed_type, "load_state")
        context = self._checkpoint_context()
        folder = checkpoint_state.load_state(
            self.strategy,
            context,
            self.project_configuration,
            input_dir,
            load_kwargs,
            **load_model_func_kwargs,
        )
        self.step = context.step
        return folder

    def register_for_checkpointing(self, *objects: Any) -> None:
        """Have :meth:`save_state`/:meth:`load_state` include objects with ``state_dict``.

        Example:
            >>> accelerator.register_for_checkpointing(ema)  # doctest: +SKIP
        """
        checkpoint_hooks.check_checkpointable(objects)
        self._custom_objects.extend(objects)

    def register_save_state_pre_hook(self, hook: Callable[..., None]) -> Any:
        """Run ``hook(models, weights, output_dir)`` before :meth:`save_state` writes.

        ``output_dir`` is the temporary folder being written; remove a model's entry from
        ``weights`` to skip saving it. Returns a handle with ``.remove()``.

        Example:
            >>> handle = accelerator.register_save_state_pre_hook(my_hook)  # doctest: +SKIP
        """
        return checkpoint_hooks.add_hook(self._save_model_state_pre_hook, hook)

    def register_load_state_pre_hook(self, hook: Callable[..., None]) -> Any:
        """Run ``hook(models, input_dir)`` before :meth:`load_state` loads.

        Remove a model from ``models`` to load it yourself. Returns a handle with ``.remove()``.

        Example:
            >>> handle = accelerator.register_load_state_pre_hook(my_hook)  # doctest: +SKIP
        """
        return checkpoint_hooks.add_hook(self._load_model_state_pre_hook, hook)

    def __repr__(self) -> str:
        return f"Accelerator(distributed_type={self.distributed_type.value}, num_processes={self.num_processes}, device={self.device}, mixed_precision={self.mixed_precision!r})"
