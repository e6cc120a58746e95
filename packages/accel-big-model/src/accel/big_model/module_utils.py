"""Helpers about modules and tensor storage that loading code (transformers, diffusers) uses.

Example:
    >>> from torch import nn
    >>> from accel.big_model.module_utils import has_offloaded_params
    >>> has_offloaded_params(nn.Linear(2, 2))
    False
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from accel.big_model.align_hook import AlignDevicesHook
from accel.big_model.hooks import hook_of
from accel.big_model.tensors import set_module_tensor_to_device
from accel.state.process_logging import library_logger

logger = library_logger(__name__)


def has_offloaded_params(module: nn.Module) -> bool:
    """Whether ``module`` carries an :class:`AlignDevicesHook` that offloads its weights.

    Example:
        >>> from accel.big_model import add_hook_to_module
        >>> layer = add_hook_to_module(nn.Linear(2, 2), AlignDevicesHook("cpu", offload=True))
        >>> has_offloaded_params(layer)
        True
    """
    hook = hook_of(module)
    return isinstance(hook, AlignDevicesHook) and bool(hook.offload)


@contextlib.contextmanager
def align_module_device(
    module: nn.Module, execution_device: torch.device | str | None = None
) -> Iterator[None]:
    """Inside the block, ``module``'s own weights are materialised on one device: offloaded
    weights are loaded (on ``execution_device`` if given, else the hook's), other weights
    are moved to ``execution_device`` and moved back afterwards.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> with align_module_device(layer, "meta"):
        ...     layer.weight.device.type
        'meta'
        >>> layer.weight.device.type
        'cpu'
    """
    hook = hook_of(module)
    if isinstance(hook, AlignDevicesHook) and hook.offload:
        previous = hook.execution_device
        if execution_device is not None:
            hook.execution_device = execution_device
        try:
            hook.pre_forward(module)
            yield
        finally:
            hook.post_forward(module, None)
            hook.execution_device = previous
    elif execution_device is not None:
        devices = {name: p.device for name, p in module.named_parameters(recurse=False)}
        saved = {name: p.data for name, p in module.named_parameters(recurse=False)}
        try:
            for name in devices:
                set_module_tensor_to_device(module, name, execution_device)
            yield
        finally:
            for name, device in devices.items():
                value = saved[name] if str(execution_device) == "meta" else None
                set_module_tensor_to_device(module, name, device, value=value)
    else:
        yield


def id_tensor_storage(tensor: torch.Tensor) -> tuple[torch.device, int, int]:
    """``(device, storage address, storage bytes)``: equal for tensors sharing storage (tied
    weights) while both are alive. Meta tensors have no storage: address 0, size of the tensor.

    Example:
        >>> w = torch.zeros(4)
        >>> id_tensor_storage(w) == id_tensor_storage(w[2:])
        True
    """
    if tensor.device.type == "meta":
        return tensor.device, 0, tensor.nelement() * tensor.element_size()
    storage = tensor.untyped_storage()
    return tensor.device, storage.data_ptr(), storage.nbytes()


def clean_state_dict_for_safetensors(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A state dict safetensors can write: of several names sharing one storage only the first
    is kept (a warning names the others), and every tensor is made contiguous.

    Example:
        >>> linear = nn.Linear(2, 2)
        >>> state = {"a": linear.weight, "b": linear.weight, "c": linear.bias}
        >>> sorted(clean_state_dict_for_safetensors(state))
        ['a', 'c']
    """
    groups: dict[tuple[Any, int, int], list[str]] = {}
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            groups.setdefault(id_tensor_storage(value), []).append(name)
    dropped = [name for names in groups.values() for name in names[1:]]
    if dropped:
        logger.warning("removed shared tensors %s while saving (they alias another entry)", dropped)
    return {
        name: value.contiguous() if isinstance(value, torch.Tensor) else value
        for name, value in state_dict.items()
        if name not in dropped
    }


def get_module_children_bottom_up(
    model: nn.Module, return_fqns: bool = False
) -> list[nn.Module] | list[tuple[str, nn.Module]]:
    """Every submodule of ``model`` (``model`` last), children before their parents;
    with ``return_fqns`` as ``(qualified name, module)`` pairs.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
        >>> [name for name, _ in get_module_children_bottom_up(net, return_fqns=True)]
        ['0', '1.0', '1', '']
    """
    stack: list[tuple[str, nn.Module]] = [("", model)]
    ordered: list[tuple[str, nn.Module]] = []
    while stack:
        name, module = stack.pop()
        for child_name, child in module.named_children():
            stack.append((f"{name}.{child_name}" if name else child_name, child))
        ordered.append((name, module))
    ordered.reverse()
    return ordered if return_fqns else [module for _, module in ordered]


def _output_embeddings(model: nn.Module) -> Any:
    """A transformers model's output embeddings (``get_output_embeddings()``)."""
    get_output_embeddings = getattr(model, "get_output_embeddings", None)
    return get_output_embeddings() if callable(get_output_embeddings) else None


def check_tied_parameters_in_config(model: nn.Module) -> bool:
    """Whether a transformers model's config or modules ask for tied weights (tied word
    embeddings, tied encoder/decoder, or a module with ``_tie_weights``); False otherwise.

    Example:
        >>> check_tied_parameters_in_config(nn.Linear(2, 2))
        False
    """
    if "PreTrainedModel" not in [cls.__name__ for cls in type(model).__mro__]:
        return False
    config = getattr(model, "config", None)
    decoder_config = config
    if config is not None and hasattr(config, "get_text_config"):
        decoder_config = config.get_text_config(decoder=True)
    tied_embeddings = bool(
        decoder_config is not None
        and getattr(decoder_config, "tie_word_embeddings", False)
        and _output_embeddings(model) is not None
    )
    tied_encoder_decoder = bool(
        config is not None
        and getattr(config, "is_encoder_decoder", False)
        and getattr(config, "tie_encoder_decoder", False)
    )
    tied_module = any(hasattr(module, "_tie_weights") for module in model.modules())
    return tied_embeddings or tied_encoder_decoder or tied_module
