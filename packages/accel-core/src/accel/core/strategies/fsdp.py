"""Fully sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from accel.core.strategies.base import TrainingStrategy

_CHECKPOINT_PREFIX = "_checkpoint_wrapped_module."


def _fsdp() -> Any:
    import torch.distributed.fsdp as fsdp

    return fsdp


def _ignored_parameters(model: torch.nn.Module, ignored: Any) -> set[torch.nn.Parameter]:
    """Parameters of the plugin's ``ignored_modules`` (modules, or a regex on qualified names)."""
    if ignored is None:
        return set()
    if isinstance(ignored, str):
        pattern = re.compile(ignored)
        modules = [m for name, m in model.named_modules() if name and pattern.fullmatch(name)]
        if not modules:
            raise ValueError(
                f"FullyShardedDataParallelPlugin.ignored_modules={ignored!r} matches no submodule "
                f"name of {type(model).__name__} (names look like "
                f"{', '.join(repr(n) for n, _ in list(model.named_modules())[1:4])})"
            )
    else:
        modules = list(ignored)
    return {p for module in modules for p in module.parameters()}


def _load_from_main_process(model: torch.nn.Module, full_state: dict[str, Any] | None) -> None:
    """``cpu_ram_efficient_loading``: every rank ends with the main process's weights."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full_state or {}, options=options)


class FSDPStrategy(TrainingStrategy):
    """Shard parameters, gradients and optimizer state across processes with FSDP2.

    Submodules chosen by the plugin's wrap policy are sharded on their own (so their
    parameters are gathered just in time), then the root. The optimizer must be prepared in
    the same ``prepare`` call as the model: its parameters are swapped for the sharded ones.

    Example:
        >>> FSDPStrategy.name
        'fsdp'
    """

    name = "fsdp"

    @property
    def plugin(self) -> Any:
        """The ``FullyShardedDataParallelPlugin`` in effect.

        Example:
            >>> strategy.plugin.reshard_after_forward  # doctest: +SKIP
            True
        """
        return self.accelerator.state.fsdp_plugin

    def prepare(self, objects: list[Any], device_placement: list[bool | None]) -> list[Any]:
        """Shard the (single) model and re-point its optimizer; prepare the rest as usual.

        Example:
            >>> model, opt = strategy.prepare([model, opt], [None, None])  # doctest: +SKIP
        """
        models = [i for i, o in enumerate(objects) if isinstance(o, torch.nn.Module)]
        optimizers = [o for o in objects if isinstance(o, torch.optim.Optimizer)]
        if len(models) > 1:
            raise ValueError(
                f"FSDP prepares one model per prepare() call, got {len(models)}; prepare each "
                "model with its own optimizer in separate calls"
            )
        if bool(models) != bool(optimizers) and not self.prepared.models:
            raise ValueError(
                "with FSDP, pass the model and its optimizer to the same prepare() call: the "
                "optimizer's parameters are replaced by the sharded ones"
            )
        if not models:
            return super().prepare(objects, device_placement)
        index = models[0]
        model = objects[index]
        before = dict(model.named_parameters())
        sharded = self.shard(model)
        # activation checkpointing inserts a wrapper module into the parameter names
        after = {name.replace(_CHECKPOINT_PREFIX, ""): p for name, p in sharded.named_parameters()}
        missing = sorted(set(before) - set(after))
        if missing:
            raise RuntimeError(f"parameters disappeared while sharding the model: {missing}")
        mapping = {before[name]: after[name] for name in before}
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["params"] = [mapping.get(p, p) for p in group["params"]]
        rest = [o for i, o in enumerate(objects) if i != index]
        rest_placement = [d for i, d in enumerate(device_placement) if i != index]
        prepared = super().prepare(rest, rest_placement)
        prepared.insert(index, sharded)
        return prepared

    def _modules_to_shard(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        plugin = self.plugin
        if plugin is None:
            return
        plugin.check_wrap_classes(model)
        for name, module in model.named_modules():
            if (
                name
                and not _is_bare_container(module)
                and plugin.wrap_policy_matches(module, model)
            ):
                yield module

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """Apply ``fully_shard`` to the chosen submodules and then to ``model``.

        Example:
            >>> sharded = strategy.shard(model)  # doctest: +SKIP
        """
        fsdp = _fsdp()
        accelerator = self.accelerator
        plugin = self.plugin
        model = model.to(accelerator.device)
        options: dict[str, Any] = {}
        config = getattr(accelerator, "parallelism_config", None)
        mesh = getattr(accelerator, "torch_device_mesh", None)
        if config is not None and config.tp_enabled:
            from torch.distributed.tensor import DTensor

            from accel.core.tensor_parallel import apply_tensor_parallel, resolve_tp_plan

            handler = config.tp_handler
            user_plan = handler.tp_plan if handler is not None else None
            if mesh is None:
                raise RuntimeError(
                    "parallelism_config has tp_size > 1 but the accelerator built no device mesh"
                )
            split = any(isinstance(p, DTensor) for p in model.parameters())
            plan = {} if split else resolve_tp_plan(model, user_plan)
            apply_tensor_parallel(model, mesh["tp"], plan)
        if config is not None and mesh is not None:
            if not (config.dp_shard_enabled or config.cp_enabled):
                # tensor parallel only: nothing to shard over, and no FSDP mixed-precision
                # policy, so fp16/bf16 is the Accelerator's autocast forward
                if accelerator.native_amp:
                    from accel.core.precision import wrap_forward_in_autocast

                    wrap_forward_in_autocast(
                        model, accelerator.mixed_precision, accelerator.device,
                        accelerator.autocast_handler,
                    )  # fmt: skip
                return model
            # FSDP2 over dp_shard(_cp); with dp_replicate too, a 2-D mesh makes it HSDP
            options["mesh"] = mesh[tuple(config.fsdp_dim_names)]
        if plugin is not None:
            options["reshard_after_forward"] = plugin.reshard_after_forward
            if plugin.cpu_offload:
                options["offload_policy"] = plugin.offload_policy()
            if plugin.mixed_precision_policy is not None:
                options["mp_policy"] = plugin.mixed_precision_policy
        ignored = _ignored_parameters(model, plugin.ignored_modules if plugin else None)
        if ignored:
            options["ignored_params"] = ignored
        full_state = None
        if plugin is not None and plugin.cpu_ram_efficient_loading and accelerator.is_main_process:
            full_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        blocks = [
            m
            for m in self._modules_to_shard(model)
            if not ignored or not all(p in ignored for p in m.parameters())
        ]
        if plugin is not None and plugin.activation_checkpointing and blocks:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
                apply_activation_checkpointing,
            )

            chosen = set(map(id, blocks))
            apply_activation_checkpointing(model, check_fn=lambda m: id(m) in chosen)
            blocks = [
                m
                for m in model.modules()
                if getattr(m, "_checkpoint_wrapped_module", None) is not None
            ]
        # Bottom-up: fully_shard on a parent first would turn its children's parameters into
        # DTensors, which the children's own fully_shard then mistakes for tensor parallelism.
        for block in reversed(blocks):
            fsdp.fully_shard(block, **options)
        fsdp.fully_shard(model, **options)
        if plugin is not None and plugin.cpu_ram_efficient_loading:
            _load_from_main_process(model, full_state)
        return model

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        """Skip the gradient reduce-scatter while in the context.

        Example:
            >>> with strategy.no_sync(model):  # doctest: +SKIP
            ...     loss.backward()
        """
        return _requires_gradient_sync_off(model)

    def clip_grad_norm_(
        self, parameters: Iterable[torch.nn.Parameter], max_norm: float, norm_type: float = 2.0
    ) -> torch.Tensor:
        """Clip by the norm over all shards; returns that norm as a plain tensor.

        Example:
            >>> strategy.clip_grad_norm_(model.parameters(), 1.0)  # doctest: +SKIP
        """
        norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm, norm_type=norm_type)
        full_tensor = getattr(norm, "full_tensor", None)
        return full_tensor() if full_tensor is not None else norm

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The full (unsharded) state dict on CPU, or this rank's shards, per the plugin.

        Every process must call it: gathering the full state is a collective.

        Example:
            >>> sd = strategy.state_dict(model)  # doctest: +SKIP
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = self.plugin is None or str(self.plugin.state_dict_type).upper().startswith("FULL")
        options = StateDictOptions(full_state_dict=full, cpu_offload=full)
        return _tensors(get_model_state_dict(model, options=options))

    # -- checkpoints: full (unsharded) states in Accelerate's file layout -----------------

    def _owner(self, optimizer: Any) -> torch.nn.Module:
        """The prepared model whose (sharded) parameters ``optimizer`` updates."""
        inner = getattr(optimizer, "optimizer", optimizer)
        mine = {id(p) for group in inner.param_groups for p in group["params"]}
        for model in self.prepared.models:
            if any(id(p) in mine for p in model.parameters()):
                return model
        raise ValueError(
            f"the optimizer {type(inner).__name__} updates no parameter of a model prepared "
            "with FSDP; prepare the model and its optimizer in the same prepare() call"
        )

    def checkpoint_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Full weights gathered on the main process (other processes get an empty dict),
        whatever the plugin's ``state_dict_type``: checkpoints keep the non-sharded layout.

        Example:
            >>> strategy.checkpoint_state_dict(model)  # doctest: +SKIP
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return _tensors(get_model_state_dict(model, options=options))

    def optimizer_state_dict(self, optimizer: Any) -> dict[str, Any]:
        """The full optimizer state, keyed by parameter names, on the main process (other
        processes get an empty dict). A collective: every process calls it.

        Example:
            >>> strategy.optimizer_state_dict(optimizer)  # doctest: +SKIP
        """
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        inner = getattr(optimizer, "optimizer", optimizer)
        return get_optimizer_state_dict(self._owner(optimizer), inner, options=options)

    def load_optimizer_state_dict(self, optimizer: Any, state: dict[str, Any]) -> None:
        """Shard a full optimizer state (as :meth:`optimizer_state_dict` wrote, or Accelerate's
        ``FULL_STATE_DICT`` ``optimizer.bin``) onto this process.

        Example:
            >>> strategy.load_optimizer_state_dict(optimizer, state)  # doctest: +SKIP
        """
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        inner = getattr(optimizer, "optimizer", optimizer)
        if not _has_tensor_state(state):
            # nothing to shard (e.g. SGD without momentum): torch's loader needs a tensor to
            # find the device, so only the hyperparameters are put back
            for group, saved in zip(inner.param_groups, state.get("param_groups", [])):
                group.update({k: v for k, v in saved.items() if k != "params"})
            return
        set_optimizer_state_dict(
            self._owner(optimizer),
            inner,
            optim_state_dict=state,
            options=StateDictOptions(full_state_dict=True),
        )

    def load_model_state_dict(
        self, model: torch.nn.Module, state_dict: dict[str, torch.Tensor], **kwargs: Any
    ) -> Any:
        """Shard full weights onto this process's part of an FSDP2 model (not strict: the
        caller checks the returned missing/unexpected keys).

        Example:
            >>> strategy.load_model_state_dict(model, weights)  # doctest: +SKIP
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        if kwargs:
            raise TypeError(f"load_state under FSDP accepts only strict=...; got {sorted(kwargs)}")
        options = StateDictOptions(full_state_dict=True, strict=False)
        # torch types model_state_dict as dict[str, ValueType] (invariant); tensors are valid
        return set_model_state_dict(model, state_dict, options=options)  # pyright: ignore[reportArgumentType]


def _tensors(state: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """A model state dict from torch's ``get_model_state_dict``, whose return type admits
    non-tensor values: checked to hold tensors only."""
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"the model state dict holds {type(value).__name__} at {name!r}, not a tensor"
            )
        tensors[name] = value
    return tensors


def _has_tensor_state(state: dict[str, Any]) -> bool:
    """Whether an optimizer state dict holds per-parameter tensors (not just scalars)."""
    return any(
        isinstance(value, torch.Tensor) and value.dim() > 0
        for entry in state.get("state", {}).values()
        if isinstance(entry, dict)
        for value in entry.values()
    )


def _is_bare_container(module: torch.nn.Module) -> bool:
    """A ``ModuleList``/``ModuleDict`` without ``forward``: never called, so ``fully_shard``
    refuses it (a size-based policy would otherwise pick it); its children are judged alone."""
    return (
        isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict))
        and type(module).forward is torch.nn.Module.forward
    )


@contextlib.contextmanager
def _requires_gradient_sync_off(model: torch.nn.Module) -> Iterator[None]:
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is None:
        yield
        return
    setter(False)
    try:
        yield
    finally:
        setter(True)
