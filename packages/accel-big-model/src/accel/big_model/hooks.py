"""Forward hooks that see args and kwargs: the hook base and attaching / removing hooks.

:func:`add_hook_to_module` wraps a module's ``forward`` so a :class:`ModelHook` runs before
(with the call's args and kwargs) and after it; :func:`remove_hook_from_module` restores it.
The hooks that place weights are in :mod:`~accel.big_model.align_hook` (attached by
:mod:`~accel.big_model.hook_attach`), the whole-model CPU offload hooks in
:mod:`~accel.big_model.cpu_offload_hooks`.

Example:
    >>> m = add_hook_to_module(nn.Linear(2, 2), ModelHook())
    >>> hook_of(remove_hook_from_module(m)) is None
    True
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch
from torch import nn

_ADDED_ATTRIBUTES = ("to", "cuda", "npu", "xpu", "mlu", "sdaa", "musa")


_Method = TypeVar("_Method", bound=Callable[..., Any])


def outside_compile(fn: _Method) -> _Method:
    """Keep a hook method out of torch.compile graphs (resolved on first call, cheap import).

    ``torch.compiler.disable`` imports ``torch._dynamo`` (seconds); until something imported
    it, nothing can be compiling, so the method runs as is.

    Example:
        >>> outside_compile(lambda x: x + 1)(1)
        2
    """
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        if not disabled:
            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)

    return cast(_Method, wrapper)


class ModelHook:
    """Callbacks around a module's forward that receive its args and kwargs.

    Subclass and override :meth:`init_hook`, :meth:`pre_forward`, :meth:`post_forward`,
    :meth:`detach_hook`. With ``no_grad = True`` the forward runs under ``torch.no_grad()``.

    Example:
        >>> class Double(ModelHook):
        ...     def post_forward(self, module, output):
        ...         return output * 2
        >>> lin = add_hook_to_module(nn.Identity(), Double())
        >>> lin(torch.ones(1))
        tensor([2.])
    """

    no_grad = False

    def init_hook(self, module: nn.Module) -> nn.Module:
        """Run when the hook is attached; returns the module."""
        return module

    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        """Run before ``forward``; returns the (possibly changed) ``args, kwargs``."""
        return args, kwargs

    def post_forward(self, module: nn.Module, output: Any) -> Any:
        """Run after ``forward``; returns the (possibly changed) output."""
        return output

    def detach_hook(self, module: nn.Module) -> nn.Module:
        """Run when the hook is removed; returns the module."""
        return module


class SequentialHook(ModelHook):
    """Several hooks run one after the other (``pre_forward`` and ``post_forward`` both in order).

    Example:
        >>> hook = SequentialHook(ModelHook(), ModelHook())
        >>> len(hook.hooks)
        2
    """

    def __init__(self, *hooks: ModelHook) -> None:
        self.hooks = hooks

    def init_hook(self, module: nn.Module) -> nn.Module:
        for hook in self.hooks:
            module = hook.init_hook(module)
        return module

    @outside_compile
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        for hook in self.hooks:
            args, kwargs = hook.pre_forward(module, *args, **kwargs)
        return args, kwargs

    @outside_compile
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        for hook in self.hooks:
            output = hook.post_forward(module, output)
        return output

    def detach_hook(self, module: nn.Module) -> nn.Module:
        for hook in self.hooks:
            module = hook.detach_hook(module)
        return module


def _set_forward(module: nn.Module, forward: Callable[..., Any]) -> None:
    # Assigning forward on a GraphModuleImpl instance freezes later graph edits; patch the class.
    if "GraphModuleImpl" in str(type(module)):
        setattr(module.__class__, "forward", forward)  # noqa: B010 - nn.Module types forward
    else:
        setattr(module, "forward", forward)  # noqa: B010 - nn.Module types forward


def hook_of(module: nn.Module) -> ModelHook | None:
    """The hook attached to ``module`` by :func:`add_hook_to_module` (``None``: no hook).

    Example:
        >>> hook_of(nn.Linear(1, 1)) is None
        True
    """
    return module.__dict__.get("_hf_hook")


def add_hook_to_module(module: nn.Module, hook: ModelHook, append: bool = False) -> nn.Module:
    """Attach ``hook`` to ``module`` by wrapping its ``forward`` (in place; returns ``module``).

    An existing hook is replaced, or with ``append=True`` chained before the new one in a
    :class:`SequentialHook`. :func:`remove_hook_from_module` restores the original forward.

    Example:
        >>> m = add_hook_to_module(nn.Linear(2, 2), ModelHook())
        >>> hasattr(m, "_hf_hook")
        True
    """
    old_hook = hook_of(module)
    if append and old_hook is not None:
        remove_hook_from_module(module)
        hook = SequentialHook(old_hook, hook)

    state = module.__dict__
    if "_hf_hook" in state and "_old_forward" in state:
        old_forward: Callable[..., Any] = state["_old_forward"]
    else:
        old_forward = module.forward
        state["_old_forward"] = old_forward

    module = hook.init_hook(module)
    module.__dict__["_hf_hook"] = hook

    def new_forward(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        state = module.__dict__
        current: ModelHook = state["_hf_hook"]
        args, kwargs = current.pre_forward(module, *args, **kwargs)
        if current.no_grad:
            with torch.no_grad():
                output = state["_old_forward"](*args, **kwargs)
        else:
            output = state["_old_forward"](*args, **kwargs)
        return current.post_forward(module, output)

    _set_forward(
        module, functools.update_wrapper(functools.partial(new_forward, module), old_forward)
    )
    return module


def remove_hook_from_module(module: nn.Module, recurse: bool = False) -> nn.Module:
    """Detach the hook of ``module`` (and of all submodules with ``recurse``), restoring forward.

    Example:
        >>> m = remove_hook_from_module(add_hook_to_module(nn.Linear(2, 2), ModelHook()))
        >>> hasattr(m, "_hf_hook")
        False
    """
    state = module.__dict__
    hook = hook_of(module)
    if hook is not None:
        hook.detach_hook(module)
        del state["_hf_hook"]
    if "_old_forward" in state:
        _set_forward(module, state.pop("_old_forward"))
    for attr in _ADDED_ATTRIBUTES:
        module.__dict__.pop(attr, None)
    if recurse:
        for child in module.children():
            remove_hook_from_module(child, recurse)
    return module


def remove_hook_from_submodules(module: nn.Module) -> None:
    """Remove the hooks of ``module`` and of all its submodules.

    Example:
        >>> remove_hook_from_submodules(nn.Sequential(nn.Linear(1, 1)))
    """
    remove_hook_from_module(module, recurse=True)
