"""Skipping ``normal_`` on meta tensors, which have no data to fill.

torch runs ``normal_`` on the meta device through ``torch._refs``, and its first call imports
``torch._dynamo``: seconds of CPU for every model whose init draws normal weights
(``nn.Embedding``, GPT-2-style ``_init_weights``), on a tensor that stays empty anyway.
:class:`SkipMetaNormal` answers those calls itself. It skips only calls that would succeed
and leave nothing behind but the tensor's version counter, which it bumps as the op does;
every other call (a bad ``std``, an integer tensor, a generator, autograd recording, tensor
subclasses with their own ``__torch_function__``, ...) runs the real op unchanged.

A torch function mode costs a few microseconds on every torch call made under it, so
:func:`skip_meta_normal` enters it only while ``torch._dynamo`` is not imported yet: once it
is (transformers' ``modeling_utils`` imports it), skipping saves less than the mode costs on
a typical model.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import increment_version
from torch.overrides import TorchFunctionMode

_INIT_NORMAL = nn.init.normal_
_TENSOR_NORMAL = torch.Tensor.normal_
_PLAIN_TORCH_FUNCTIONS = (
    torch.Tensor.__torch_function__.__func__,  # a subclass that does not override it
    nn.Parameter.__torch_function__,  # disabled: plain tensor semantics
)


def _tensor_normal_arguments(
    tensor: Any, mean: Any = 0, std: Any = 1, *, generator: Any = None
) -> tuple[Any, Any, Any, Any]:
    return tensor, mean, std, generator


def _init_normal_arguments(
    tensor: Any, mean: Any = 0.0, std: Any = 1.0, generator: Any = None
) -> tuple[Any, Any, Any, Any]:
    return tensor, mean, std, generator


def _plain_class(cls: type) -> bool:
    method = cls.__torch_function__
    return getattr(method, "__func__", method) in _PLAIN_TORCH_FUNCTIONS


def skippable_normal(tensor: Any, mean: Any, std: Any, generator: Any, grad: bool) -> bool:
    """Whether ``tensor.normal_(mean, std, generator=generator)`` may be skipped.

    True only for a plain floating-point meta tensor, number arguments the op accepts, no
    generator, and nothing for autograd to record or refuse (``grad``: whether grad mode
    applies to the call; ``nn.init`` runs without it). Skipping such a call changes nothing:
    a meta tensor has no data and the call draws no random numbers.

    Example:
        >>> meta = torch.empty(3, device="meta")
        >>> skippable_normal(meta, 0.0, 0.02, None, grad=True)
        True
        >>> skippable_normal(meta, 0.0, -1.0, None, grad=True)  # the op raises: keep it
        False
        >>> skippable_normal(torch.empty(3), 0.0, 1.0, None, grad=True)  # real data
        False
    """
    return (
        isinstance(tensor, torch.Tensor)
        and _plain_class(type(tensor))  # first: a subclass's attributes run its own code
        and tensor.is_meta
        and tensor.is_floating_point()
        and type(mean) in (int, float)
        and type(std) in (int, float)
        and std >= 0  # also false for NaN, which the op refuses
        and generator is None
        and not (grad and torch.is_grad_enabled() and tensor.requires_grad)
        and not torch.is_inference_mode_enabled()
        and not tensor.is_inference()
    )


class SkipMetaNormal(TorchFunctionMode):
    """Inside this block, ``normal_`` on meta tensors returns at once (see the module).

    Catches ``Tensor.normal_`` (and so the ``nn.init`` functions that call it, such as
    ``xavier_normal_``) and ``nn.init.normal_``, which dispatches on its own. Everything else
    passes through unchanged.

    Example:
        >>> with SkipMetaNormal():
        ...     embedding = nn.Embedding(10, 4, device="meta")
        >>> embedding.weight.shape, embedding.weight.device
        (torch.Size([10, 4]), device(type='meta'))
    """

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is _TENSOR_NORMAL or func is _INIT_NORMAL:
            parse = _tensor_normal_arguments if func is _TENSOR_NORMAL else _init_normal_arguments
            try:
                tensor, mean, std, generator = parse(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # the op reports its own usage error
            if skippable_normal(tensor, mean, std, generator, grad=func is _TENSOR_NORMAL):
                increment_version(tensor)
                return tensor
        return func(*args, **kwargs)


def skip_meta_normal() -> AbstractContextManager[object]:
    """:class:`SkipMetaNormal` while ``torch._dynamo`` is not imported, else a no-op context.

    Example:
        >>> with skip_meta_normal():
        ...     weight = nn.Embedding(10, 4, device="meta").weight
        >>> weight.is_meta
        True
    """
    if "torch._dynamo" in sys.modules:
        return nullcontext()
    return SkipMetaNormal()
