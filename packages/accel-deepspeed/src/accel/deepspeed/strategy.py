"""``DeepSpeedStrategy``: what ``prepare``, ``backward``, clipping and checkpoints do under
DeepSpeed. The ``Accelerator`` finds it through the ``accel.strategies`` entry point when its
``distributed_type`` is ``DEEPSPEED``; accel-core never imports this package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from accel.core.checkpoint.context import CheckpointContext
from accel.core.optimizer import AcceleratedOptimizer
from accel.core.scheduler import AcceleratedScheduler
from accel.core.strategies.base import TrainingStrategy
from accel.core.strategies.prepared import PreparedObjects
from accel.deepspeed.autofill import batch_size_of, fill_from_prepare
from accel.deepspeed.availability import require_deepspeed
from accel.deepspeed.checkpoint import load_deepspeed_checkpoint, save_deepspeed_checkpoint
from accel.deepspeed.config import AUTO
from accel.deepspeed.dummies import DummyOptim, DummyScheduler
from accel.deepspeed.group import ensure_process_group
from accel.deepspeed.plugin import DeepSpeedPlugin
from accel.deepspeed.sequence_parallel import (
    current_mpu,
    refuse_partly_dealt_chunks,
    register_ulysses,
    sequence_parallel_size,
    wrap_loader,
)
from accel.deepspeed.wrappers import (
    DeepSpeedEngineWrapper,
    DeepSpeedOptimizerWrapper,
    DeepSpeedSchedulerWrapper,
)
from accel.deepspeed.zero3 import check_model_partitioning, gathered_state_dict


class DeepSpeedStrategy(TrainingStrategy):
    """Runs training through DeepSpeed engines (ZeRO stages 0-3, offload, fp16/bf16).

    ``prepare`` turns a model (with its optimizer and scheduler) into a DeepSpeed engine after
    filling the config's ``"auto"`` values; dataloaders are sharded as usual. With
    ``ParallelismConfig(sp_size > 1)`` the model's attention runs DeepSpeed Ulysses and the
    dataloaders are wrapped to hand each rank its chunk of the sequence
    (:mod:`accel.deepspeed.sequence_parallel`). One model per
    ``prepare`` call; several models need one ``DeepSpeedPlugin`` each
    (``Accelerator(deepspeed_plugins={...})`` and ``state.select_deepspeed_plugin(name)``).

    Example:
        >>> accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))  # doctest: +SKIP
        >>> type(accelerator.strategy).__name__  # doctest: +SKIP
        'DeepSpeedStrategy'
    """

    name = "deepspeed"
    save_model_kwargs = ("client_state", "save_latest", "exclude_frozen_parameters")
    owns_mixed_precision = True
    scales_loss_for_accumulation = True
    gradients_on_parameters = False  # the engine accumulates in its own buffers

    def __init__(self, accelerator: Any, prepared: PreparedObjects | None = None) -> None:
        super().__init__(accelerator, prepared)
        require_deepspeed()
        state = accelerator.state
        if state.deepspeed_plugins is None:
            plugin = DeepSpeedPlugin()  # from what accel launch passed
            plugin.set_mixed_precision(state.mixed_precision)
            state.deepspeed_plugins = plugin
        plugins = state.deepspeed_plugins
        for name, plugin in plugins.items() if isinstance(plugins, dict) else [("", plugins)]:
            if not isinstance(plugin, DeepSpeedPlugin):
                where = f"deepspeed_plugins[{name!r}]" if name else "deepspeed_plugin"
                raise TypeError(
                    f"Accelerator({where}=...) got a {type(plugin).__module__}."
                    f"{type(plugin).__name__}; pass accel.deepspeed.DeepSpeedPlugin"
                )
            self._reconcile_accumulation(plugin)
        self._wrappers: list[tuple[DeepSpeedEngineWrapper, DeepSpeedPlugin]] = []
        self._batch_sizes: list[tuple[int, str]] = []
        self._ulysses_loaders: list[Any] = []

    # -- configuration -------------------------------------------------------------------

    def _reconcile_accumulation(self, plugin: DeepSpeedPlugin) -> None:
        accelerator = self.accelerator
        steps = accelerator.gradient_accumulation_steps
        configured = plugin.get_value("gradient_accumulation_steps")
        if configured in (None, AUTO):
            return
        if steps == 1:
            accelerator.gradient_accumulation_steps = int(configured)
        elif int(configured) != steps:
            raise ValueError(
                f"Accelerator(gradient_accumulation_steps={steps}) conflicts with "
                f"gradient_accumulation_steps={configured} "
                f"({plugin.sources.get('gradient_accumulation_steps', plugin.hf_ds_config.origin)}); "
                'give it in one place, or set the config value to "auto"'
            )

    @property
    def plugin(self) -> DeepSpeedPlugin:
        """The active DeepSpeed plugin.

        Example:
            >>> accelerator.strategy.plugin.zero_stage  # doctest: +SKIP
            2
        """
        plugin = self.accelerator.state.deepspeed_plugin
        if plugin is None:
            raise ValueError(
                "no DeepSpeed plugin is selected: call accelerator.state."
                "select_deepspeed_plugin(name) with a name given in deepspeed_plugins"
            )
        return plugin

    def engines(self) -> list[DeepSpeedEngineWrapper]:
        """The engines this accelerator created and still holds, in ``prepare`` order.

        Example:
            >>> [w.engine for w in accelerator.strategy.engines()]  # doctest: +SKIP
        """
        live = self.prepared.models
        self._wrappers = [(w, p) for w, p in self._wrappers if any(w.engine is m for m in live)]
        return [w for w, _ in self._wrappers]

    # -- prepare -------------------------------------------------------------------------

    def prepare(self, objects: list[Any], device_placement: list[bool | None]) -> list[Any]:
        """Create the DeepSpeed engine of the model in ``objects`` (with its optimizer and
        scheduler), and prepare dataloaders as usual; same order back.

        Example:
            >>> model, optimizer, loader = accelerator.prepare(model, optimizer, loader)  # doctest: +SKIP
        """
        accelerator = self.accelerator
        deepspeed = require_deepspeed()
        engine_type = deepspeed.DeepSpeedEngine
        models, optimizers, schedulers = [], [], []
        for index, obj in enumerate(objects):
            if isinstance(obj, torch.nn.Module) and not isinstance(obj, engine_type):
                models.append(index)
            elif isinstance(obj, (torch.optim.Optimizer, DummyOptim)) and not isinstance(
                obj, AcceleratedOptimizer
            ):
                optimizers.append(index)
            elif isinstance(obj, (LRScheduler, DummyScheduler)) and not isinstance(
                obj, AcceleratedScheduler
            ):
                schedulers.append(index)
        self._check_counts(objects, models, optimizers, schedulers)

        result = list(objects)
        loaders = []
        for index, obj in enumerate(objects):
            if isinstance(obj, torch.utils.data.DataLoader):
                size = batch_size_of(obj, accelerator.split_batches, accelerator.num_processes)
                if size is not None:
                    loaders.append((size, f"the dataloader's batch_size ({obj.batch_size})"))
                result[index] = self.prepare_object(obj, device_placement[index])
        if loaders:
            self._batch_sizes = loaders
        if models:
            self._prepare_model(deepspeed, objects, result, models, optimizers, schedulers)
        if sequence_parallel_size(accelerator.parallelism_config) > 1:
            for index, obj in enumerate(objects):
                if isinstance(obj, torch.utils.data.DataLoader):
                    result[index] = self.ulysses_loader(result[index])
        return result

    def _prepare_model(
        self,
        deepspeed: Any,
        objects: list[Any],
        result: list[Any],
        models: list[int],
        optimizers: list[int],
        schedulers: list[int],
    ) -> None:
        model = objects[models[0]]
        optimizer = objects[optimizers[0]] if optimizers else None
        scheduler = objects[schedulers[0]] if schedulers else None
        engine, ds_optimizer, ds_scheduler = self._create_engine(
            deepspeed, model, optimizer, scheduler, self._batch_sizes
        )
        result[models[0]] = engine
        if optimizers:
            result[optimizers[0]] = ds_optimizer
        if schedulers:
            result[schedulers[0]] = ds_scheduler

    def ulysses_loader(self, loader: Any) -> Any:
        """``loader`` wrapped for Ulysses sequence parallelism (``sp_size > 1``), else
        ``loader`` itself. The model must have been prepared before or in the same call.

        Example:
            >>> loader = accelerator.strategy.ulysses_loader(loader)  # doctest: +SKIP
        """
        if sequence_parallel_size(self.accelerator.parallelism_config) == 1:
            return loader
        mpu = current_mpu()
        if mpu is None:
            raise ValueError(
                "ParallelismConfig(sp_size > 1): a dataloader is split over the sequence "
                "parallel group that preparing the model creates; pass the dataloader to the "
                "same prepare() call as the model, or call "
                "accelerator.deepspeed_ulysses_dl_adapter(loader, model) after preparing it"
            )
        wrapped = wrap_loader(loader, mpu, self.accelerator.device)
        self._ulysses_loaders.append(wrapped)
        return wrapped

    @staticmethod
    def _check_counts(
        objects: list[Any], models: list[int], optimizers: list[int], schedulers: list[int]
    ) -> None:
        for kind, found in (
            ("model", models),
            ("optimizer", optimizers),
            ("scheduler", schedulers),
        ):
            if len(found) > 1:
                names = ", ".join(type(objects[i]).__name__ for i in found)
                raise ValueError(
                    f"under DeepSpeed, prepare() takes one {kind} per call, got {len(found)} "
                    f"({names}); for several models give Accelerator(deepspeed_plugins="
                    "{'name': DeepSpeedPlugin(...), ...}) and call accelerator.state."
                    "select_deepspeed_plugin(name) before preparing each model with its optimizer"
                )
        if not models and (optimizers or schedulers):
            kind = "optimizer" if optimizers else "scheduler"
            raise ValueError(
                f"under DeepSpeed, the {kind} must be passed to the same prepare() call as its "
                "model (DeepSpeed builds them together)"
            )
        if schedulers and not optimizers:
            raise ValueError(
                "under DeepSpeed, the scheduler must be passed to the same prepare() call as "
                "its optimizer"
            )

    def _create_engine(
        self,
        deepspeed: Any,
        model: torch.nn.Module,
        optimizer: Any,
        scheduler: Any,
        batch_sizes: list[tuple[int, str]],
    ) -> tuple[Any, Any, Any]:
        accelerator = self.accelerator
        plugin = self.plugin
        sp_size = sequence_parallel_size(accelerator.parallelism_config)
        if optimizer is not None:
            params = (
                optimizer.params
                if isinstance(optimizer, DummyOptim)
                else [p for group in optimizer.param_groups for p in group["params"]]
            )
            owned = {id(p) for p in model.parameters()}
            if params and not any(id(p) in owned for p in params):
                raise ValueError(
                    f"the optimizer {type(optimizer).__name__} holds {len(params)} parameters, "
                    f"none of which belongs to the {type(model).__name__} passed with it; build "
                    "the optimizer from model.parameters()"
                )
        check_model_partitioning(model, plugin)
        plugin.set_moe_leaf_modules(model)
        self._reconcile_accumulation(plugin)

        if batch_sizes:
            pick = min if plugin.is_train_batch_min else max
            micro, source = pick(batch_sizes, key=lambda item: item[0])
        else:
            micro, source = None, "no dataloader was prepared"
        config = fill_from_prepare(
            plugin,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            micro_batch_size=micro,
            batch_source=source,
            gradient_accumulation_steps=accelerator.gradient_accumulation_steps,
            num_processes=accelerator.num_processes // sp_size,  # data-parallel ranks
        )
        kwargs: dict[str, Any] = {"model": model, "config": config}
        ensure_process_group()
        if sp_size > 1:
            if not deepspeed.comm.is_initialized():
                deepspeed.comm.init_distributed(
                    dist_backend=torch.distributed.get_backend(), dist_init_required=False
                )
            micro_batch = int(config["train_micro_batch_size_per_gpu"])
            kwargs["mpu"] = register_ulysses(model, accelerator.parallelism_config, micro_batch)
        if isinstance(optimizer, DummyOptim):
            kwargs["model_parameters"] = optimizer.params
        elif optimizer is not None:
            kwargs["optimizer"] = optimizer
        if isinstance(scheduler, DummyScheduler):
            if "scheduler" not in config:
                kwargs["lr_scheduler"] = scheduler.lr_scheduler_callable
        elif scheduler is not None:
            kwargs["lr_scheduler"] = scheduler
        engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(**kwargs)

        wrapper = DeepSpeedEngineWrapper(engine)
        self._wrappers.append((wrapper, plugin))
        # Returned from prepare(): the Accelerator records the engine and the wrappers.
        prepared_optimizer = prepared_scheduler = None
        if optimizer is not None:
            prepared_optimizer = DeepSpeedOptimizerWrapper(ds_optimizer, wrapper)
        if scheduler is not None:
            prepared_scheduler = DeepSpeedSchedulerWrapper(
                ds_scheduler, [prepared_optimizer], split_batches=accelerator.split_batches
            )
        return engine, prepared_optimizer, prepared_scheduler

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Refused: an engine is built by ``prepare`` from the model and its optimizer.

        Example:
            >>> model, optimizer = accelerator.prepare(model, optimizer)  # doctest: +SKIP
        """
        raise ValueError(
            "under DeepSpeed, accelerator.prepare_model() cannot build an engine; pass the "
            "model (with its optimizer) to accelerator.prepare(), or use "
            "prepare_model(model, evaluation_mode=True) for a plain model on the device"
        )

    # -- the training step ---------------------------------------------------------------

    def _wrapper_for(self, model: Any = None) -> DeepSpeedEngineWrapper:
        engines = self.engines()
        if model is not None:
            for wrapper in engines:
                if model is wrapper.engine or model is wrapper.engine.module:
                    return wrapper
            raise ValueError(f"{type(model).__name__} was not prepared by this accelerator")
        training = [(w, p) for w, p in self._wrappers if w.engine.optimizer is not None]
        if not training:
            raise ValueError(
                "under DeepSpeed, backward() needs a model prepared together with its "
                "optimizer: accelerator.prepare(model, optimizer, ...)"
            )
        if len(training) == 1:
            return training[0][0]
        active = self.accelerator.state.deepspeed_plugin
        for wrapper, plugin in reversed(training):
            if plugin is active:
                return wrapper
        return training[-1][0]

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """The engine's backward, marked as the end of an accumulation group or not.

        Example:
            >>> accelerator.backward(loss)  # doctest: +SKIP
        """
        self._wrapper_for().backward(loss, sync_gradients=self.accelerator.sync_gradients, **kwargs)

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """Nothing to enter: the engine skips reductions on non-final accumulation steps.

        Example:
            >>> with accelerator.no_sync(model): ...  # doctest: +SKIP
        """
        return contextlib.nullcontext()

    def clip_grad_norm_(
        self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2.0
    ) -> torch.Tensor | None:
        """Have the engine clip to ``max_norm`` and run its step now; returns the norm before
        clipping (``None`` on an accumulation step, where nothing is clipped yet).

        DeepSpeed clips inside its step, so on a synchronizing step this runs the engine's
        step (``optimizer.step()`` afterwards has nothing left to do).

        Example:
            >>> norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)  # doctest: +SKIP
        """
        if float(norm_type) != 2.0:
            raise ValueError(
                f"clip_grad_norm_(norm_type={norm_type!r}) under DeepSpeed: the engine clips the "
                "2-norm only; use norm_type=2"
            )
        wrapper = self._wrapper_for()
        wrapper.set_gradient_clipping(max_norm)
        if not self.accelerator.sync_gradients:
            return None
        wrapper.step()
        norm = wrapper.get_global_grad_norm()
        return None if norm is None else torch.tensor(norm)

    # -- models and checkpoints ----------------------------------------------------------

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The user's model inside a DeepSpeed engine.

        Example:
            >>> accelerator.unwrap_model(engine)  # doctest: +SKIP
        """
        inner = getattr(model, "module", None)
        if inner is not None and type(model).__name__ == "DeepSpeedEngine":
            return inner
        return model

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """The full state dict; under ZeRO-3 gathered from every process onto the main one
        (``None`` elsewhere). Every process must call it.

        Example:
            >>> state = accelerator.get_state_dict(model)  # doctest: +SKIP
        """
        wrapper = self._wrapper_for(model)
        engine = wrapper.engine
        if engine.zero_optimization_partition_weights():
            return gathered_state_dict(engine)
        return engine.module.state_dict()

    def save_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        safe_serialization: bool = True,
        **model_kwargs: Any,
    ) -> None:
        """Write DeepSpeed's checkpoint of each engine plus accel's RNG, dataloader and
        custom-object files into ``folder`` (see ``accel.deepspeed.checkpoint``);
        ``model_kwargs`` go to every ``engine.save_checkpoint``.

        Example:
            >>> accelerator.save_state("ckpt")  # doctest: +SKIP
        """
        refuse_partly_dealt_chunks(self._ulysses_loaders)
        save_deepspeed_checkpoint(
            folder, context, self, self.engines(), safe_serialization, **model_kwargs
        )

    def load_checkpoint(
        self,
        folder: str,
        context: CheckpointContext,
        load_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> None:
        """Load what :meth:`save_checkpoint` wrote.

        Example:
            >>> accelerator.load_state("ckpt")  # doctest: +SKIP
        """
        load_deepspeed_checkpoint(
            folder, context, self, self.engines(), load_kwargs, **model_kwargs
        )
