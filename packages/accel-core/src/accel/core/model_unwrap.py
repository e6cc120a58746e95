"""Finding the user's module inside parallel and compile wrappers, and modules by class name.

Example:
    >>> import torch
    >>> from accel.core.model_unwrap import extract_model_from_parallel
    >>> model = torch.nn.Linear(2, 2)
    >>> extract_model_from_parallel(model) is model
    True
"""

from __future__ import annotations

import sys

import torch
from torch.nn.parallel import DataParallel, DistributedDataParallel

from accel.core.precision import unwrap_forward
from accel.state.optional_packages import is_peft_available

_WRAPPERS = (DistributedDataParallel, DataParallel)


def compiled_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module ``torch.compile`` wrapped when ``model`` is its ``OptimizedModule``, else
    ``None``.

    Example:
        >>> import torch
        >>> compiled_module(torch.nn.Linear(2, 2)) is None
        True
    """
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, torch.nn.Module) else None


def _unwrap_once(model: torch.nn.Module) -> torch.nn.Module:
    if isinstance(model, _WRAPPERS):
        return model.module
    # DeepSpeed engines keep the user's module in .module; checked by name so that
    # accel-core does not import deepspeed.
    inner = getattr(model, "module", None)
    if type(model).__name__ == "DeepSpeedEngine" and isinstance(inner, torch.nn.Module):
        return inner
    return model


def extract_model_from_parallel(
    model: torch.nn.Module,
    keep_fp32_wrapper: bool = True,
    keep_torch_compile: bool = True,
    recursive: bool = False,
) -> torch.nn.Module:
    """The user's module inside DDP / DataParallel / DeepSpeed / ``torch.compile`` wrappers.

    ``keep_fp32_wrapper=False`` also removes the mixed-precision forward accel installed;
    ``keep_torch_compile=False`` returns the module that was compiled; ``recursive=True`` also
    unwraps DDP/DataParallel wrappers found among the children. FSDP2 modules are the user's
    own class (``fully_shard`` does not wrap), so they come back as they are.

    Example:
        >>> import torch
        >>> inner = torch.nn.Linear(2, 2)
        >>> extract_model_from_parallel(torch.nn.DataParallel(inner)) is inner
        True
    """
    original = compiled_module(model)
    compiled = model if original is not None else None
    inner = original if original is not None else model
    previous = None
    while inner is not previous:
        previous, inner = inner, _unwrap_once(inner)
        original = compiled_module(inner)
        if original is not None:
            inner = original
    if recursive:
        for name, child in list(inner.named_children()):
            unwrapped = extract_model_from_parallel(child, keep_fp32_wrapper, True, True)
            if unwrapped is not child:
                setattr(inner, name, unwrapped)
    if not keep_fp32_wrapper:
        unwrap_forward(inner)
    if compiled is not None and keep_torch_compile:
        return compiled
    return inner


def is_peft_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` (after unwrapping) is a PEFT ``PeftModel``; False without peft.

    Example:
        >>> import torch
        >>> is_peft_model(torch.nn.Linear(2, 2))
        False
    """
    if not is_peft_available():
        return False
    from peft import PeftModel  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    return isinstance(extract_model_from_parallel(model), PeftModel)


def get_module_class_from_name(module: torch.nn.Module, name: str) -> type[torch.nn.Module] | None:
    """The class of the first submodule (depth first, ``module`` included) whose class is
    called ``name``; ``None`` when there is none.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
        >>> get_module_class_from_name(net, "ReLU")
        <class 'torch.nn.modules.activation.ReLU'>
    """
    if type(module).__name__ == name:
        return type(module)
    for child in module.children():
        found = get_module_class_from_name(child, name)
        if found is not None:
            return found
    return None


def is_compiled_module(module: torch.nn.Module) -> bool:
    """Whether ``module`` is the wrapper ``torch.compile`` returns.

    Example:
        >>> import torch
        >>> is_compiled_module(torch.nn.Linear(2, 2))
        False
    """
    # Only torch._dynamo makes that wrapper; importing it just to look costs seconds of CPU.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)
