"""The ``Accelerator``'s preparation of objects: ``prepare`` dispatches each object to
``prepare_model``, ``prepare_optimizer``, ``prepare_scheduler`` or ``prepare_data_loader``
through the training strategy and records what it returns; ``unwrap_model``,
``get_state_dict`` and ``free_memory`` work on those prepared objects.

Example:
    >>> from accel.core import Accelerator
    >>> issubclass(Accelerator, PreparingMixin)
    True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any

import torch

from accel.core.accelerator_parts import AcceleratorParts
from accel.core.compiling import compile_model
from accel.core.device_mesh import data_parallel_position
from accel.core.model_unwrap import compiled_module
from accel.core.optimizer import AcceleratedOptimizer
from accel.core.precision import unwrap_forward, wrap_forward_in_autocast
from accel.core.scheduler import AcceleratedScheduler
from accel.state import DynamoBackend


def _mapped_devices(model: torch.nn.Module) -> list[str]:
    """The devices of the model's ``hf_device_map`` (transformers' ``device_map=``), sorted."""
    device_map = getattr(model, "hf_device_map", None)
    return sorted(set(map(str, device_map.values()))) if isinstance(device_map, dict) else []


def has_multi_device_map(model: torch.nn.Module) -> bool:
    """Whether ``model`` was loaded with an ``hf_device_map`` spanning several devices.

    Example:
        >>> has_multi_device_map(torch.nn.Linear(1, 1))
        False
    """
    return len(_mapped_devices(model)) > 1


class PreparingMixin(AcceleratorParts):
    """Preparing and releasing models, optimizers, schedulers and dataloaders, mixed into
    :class:`~accel.core.Accelerator`.

    Example:
        >>> from accel.core import Accelerator
        >>> accelerator = Accelerator()
        >>> model = accelerator.prepare(torch.nn.Linear(2, 2))
        >>> accelerator.unwrap_model(model) is model, accelerator.free_memory(model)
        (True, [None])
    """

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
                and has_multi_device_map(obj)
            ):
                raise ValueError(
                    f"{type(obj).__name__} was loaded with a device_map spanning several devices "
                    f"({_mapped_devices(obj)}); such a model cannot be "
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
        if device_placement and not has_multi_device_map(model):
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

    def deepspeed_ulysses_dl_adapter(self, dl: Any, model: Any = None) -> Any:
        """``dl`` (prepared before the model) wrapped for DeepSpeed Ulysses sequence
        parallelism; ``dl`` itself when ``sp_size`` is 1. transformers' Trainer calls it.

        Example:
            >>> from accel.core import Accelerator
            >>> loader = [1, 2]
            >>> Accelerator().deepspeed_ulysses_dl_adapter(loader) is loader
            True
        """
        config = self.parallelism_config
        if config is None or not config.sp_enabled:
            return dl
        return self.strategy.ulysses_loader(dl)

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
        original = compiled_module(model)
        compiled = model if original is not None else None
        inner = self.strategy.unwrap_model(original if original is not None else model)
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
        original = compiled_module(model)
        if original is not None:
            model = original
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
        return has_multi_device_map(model)
