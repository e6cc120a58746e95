"""Tensor parallelism: split a model's layers over the ``tp`` mesh dimension with
``torch.distributed.tensor.parallel.parallelize_module``.

The plan maps module names (``*`` matches one name part) to a style name or a torch
``ParallelStyle``. It comes from ``TorchTensorParallelConfig(tp_plan=...)`` or from the model
(transformers' ``tp_plan`` / ``_tp_plan``, else ``config.base_model_tp_plan`` under the
base-model prefix). Parameters the plan does not cover become replicated DTensors on the same
mesh, so that every parameter is a DTensor (one norm for clipping, one state-dict path).

Example:
    >>> plan = resolve_tp_plan(model, {"fc1": "colwise", "fc2": "rowwise"})  # doctest: +SKIP
    >>> apply_tensor_parallel(model, mesh["tp"], plan)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

STYLE_NAMES = (
    "colwise",
    "rowwise",
    "colwise_rep",
    "colwise_gather_output",
    "rowwise_rep",
    "embedding_rowwise",
    "sequence_parallel",
)


def _style(name: Any, module_name: str) -> Any:
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        ParallelStyle,
        RowwiseParallel,
        SequenceParallel,
    )

    if isinstance(name, ParallelStyle):
        return name
    makers: dict[str, Callable[[], Any]] = {
        "colwise": ColwiseParallel,
        "rowwise": RowwiseParallel,
        "colwise_rep": lambda: ColwiseParallel(output_layouts=Replicate()),
        "colwise_gather_output": lambda: ColwiseParallel(output_layouts=Replicate()),
        "rowwise_rep": lambda: RowwiseParallel(input_layouts=Replicate()),
        "embedding_rowwise": lambda: RowwiseParallel(input_layouts=Replicate()),
        "sequence_parallel": SequenceParallel,
    }
    if name not in makers:
        raise ValueError(
            f"tensor parallel plan: module {module_name!r} has style {name!r}, which accel does "
            f"not know; use one of {', '.join(STYLE_NAMES)} or a "
            "torch.distributed.tensor.parallel ParallelStyle"
        )
    return makers[name]()


def _model_plan(model: torch.nn.Module) -> dict[str, Any] | None:
    for attribute in ("tp_plan", "_tp_plan"):
        plan = getattr(model, attribute, None)
        if isinstance(plan, dict) and plan:
            return dict(plan)
    config = getattr(model, "config", None)
    base = getattr(config, "base_model_tp_plan", None)
    if isinstance(base, dict) and base:
        prefix = getattr(model, "base_model_prefix", "")
        has_base = prefix and isinstance(getattr(model, prefix, None), torch.nn.Module)
        return {(f"{prefix}.{k}" if has_base else k): v for k, v in base.items()}
    return None


def resolve_tp_plan(model: torch.nn.Module, user_plan: dict[str, Any] | None) -> dict[str, Any]:
    """The plan for ``model``: ``user_plan``, else the model's own; raises when neither exists.

    Example:
        >>> resolve_tp_plan(torch.nn.Linear(2, 2), {"": "colwise"})
        {'': 'colwise'}
    """
    plan = dict(user_plan) if user_plan else _model_plan(model)
    if not plan:
        raise ValueError(
            f"tensor parallelism (tp_size > 1) needs a plan for {type(model).__name__}: it has no "
            "tp_plan/base_model_tp_plan (transformers models do); pass one as "
            "ParallelismConfig(tp_handler=TorchTensorParallelConfig(tp_plan={'fc1': 'colwise', "
            "'fc2': 'rowwise'}))"
        )
    return plan


def _pattern(key: str) -> re.Pattern[str]:
    return re.compile(re.escape(key).replace(r"\*", r"[^.]+"))


def _expand(model: torch.nn.Module, plan: dict[str, Any]) -> dict[str, Any]:
    """Plan keys matched against the model's module names; a key matching nothing raises."""
    names = [name for name, _ in model.named_modules()]
    expanded: dict[str, Any] = {}
    for key, style in plan.items():
        pattern = _pattern(key)
        matched = [name for name in names if pattern.fullmatch(name)]
        if not matched:
            raise ValueError(
                f"tensor parallel plan key {key!r} matches no module of {type(model).__name__} "
                f"(module names look like {', '.join(repr(n) for n in names[1:5])})"
            )
        for name in matched:
            expanded[name] = _style(style, name)
    return expanded


def _replicate_rest(model: torch.nn.Module, mesh: Any) -> None:
    """Make every parameter the plan left alone a replicated DTensor; its module converts
    inputs to DTensors and outputs back to plain tensors."""
    from torch.distributed.tensor import DTensor, Replicate, distribute_module

    def to_dtensor(module: torch.nn.Module, inputs: tuple[Any, ...], mesh: Any) -> Any:
        return tuple(
            DTensor.from_local(x, mesh, [Replicate()], run_check=False)
            if isinstance(x, torch.Tensor) and not isinstance(x, DTensor)
            else x
            for x in inputs
        )

    def to_local(module: torch.nn.Module, outputs: Any, mesh: Any) -> Any:
        return outputs.to_local() if isinstance(outputs, DTensor) else outputs

    def replicate_own(name: str, submodule: torch.nn.Module, mesh: Any) -> None:
        if name:  # only the module's own parameters; children are handled on their own
            return
        for key, param in list(submodule._parameters.items()):
            if param is not None and not isinstance(param, DTensor):
                full = DTensor.from_local(param.data, mesh, [Replicate()], run_check=False)
                submodule.register_parameter(
                    key, torch.nn.Parameter(full, requires_grad=param.requires_grad)
                )

    for module in list(model.modules()):
        own = [p for p in module.parameters(recurse=False) if not isinstance(p, DTensor)]
        if own:
            distribute_module(
                module, mesh, partition_fn=replicate_own, input_fn=to_dtensor, output_fn=to_local
            )


def apply_tensor_parallel(model: torch.nn.Module, mesh: Any, plan: dict[str, Any]) -> None:
    """Split ``model`` in place over the 1-D ``mesh`` by ``plan`` (a model whose parameters
    are DTensors already is kept as split; its other parameters are replicated).

    Example:
        >>> apply_tensor_parallel(model, mesh["tp"], {"fc1": "colwise"})  # doctest: +SKIP
    """
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module

    if any(isinstance(p, DTensor) for p in model.parameters()):
        # already split (transformers' from_pretrained(tp_plan="auto")): keep its layout
        _replicate_rest(model, mesh)
        return
    tied = getattr(model, "_tied_weights_keys", None)
    config = getattr(model, "config", None)
    if tied and getattr(config, "tie_word_embeddings", False):
        raise ValueError(
            f"{type(model).__name__} ties its input and output embeddings "
            "(config.tie_word_embeddings=True); tensor parallelism in accel needs untied "
            "weights: build the model with tie_word_embeddings=False"
        )
    parallelize_module(model, mesh, _expand(model, plan))
    _replicate_rest(model, mesh)


def model_has_dtensor(model: torch.nn.Module) -> bool:
    """Whether any parameter of ``model`` is a ``torch.distributed.tensor.DTensor`` (split by
    tensor parallelism or sharded by FSDP2).

    Example:
        >>> model_has_dtensor(torch.nn.Linear(2, 2))
        False
    """
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def get_model_tp_size(model: torch.nn.Module) -> int | None:
    """The tensor parallel degree a transformers model was loaded with
    (``from_pretrained(tp_plan="auto")``), or ``None``: ``model.tp_size`` (transformers < 5),
    else ``model.config.distributed_config.tp_size`` (transformers >= 5).

    Example:
        >>> get_model_tp_size(torch.nn.Linear(2, 2)) is None
        True
    """
    tp_size = getattr(model, "tp_size", None)
    if tp_size is not None:
        return tp_size
    distributed = getattr(getattr(model, "config", None), "distributed_config", None)
    if isinstance(distributed, dict):
        return distributed.get("tp_size")
    return getattr(distributed, "tp_size", None)
