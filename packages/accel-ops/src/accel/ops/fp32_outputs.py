"""Half-precision outputs back to float32: the cast a model's forward gets under mixed precision.

Example:
    >>> import torch
    >>> convert_to_fp32([torch.ones(1, dtype=torch.float16)])[0].dtype
    torch.float32
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from accel.ops.structures import recursively_apply

__all__ = ["ConvertOutputsToFp32", "convert_outputs_to_fp32", "convert_to_fp32"]

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _is_half_precision(obj: Any) -> bool:
    dtype = getattr(obj, "dtype", None)
    return isinstance(dtype, torch.dtype) and dtype in _HALF_DTYPES


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float()


def convert_to_fp32(tensor: Any) -> Any:
    """Cast every float16 or bfloat16 tensor in ``tensor`` to float32; leave the rest alone.

    Example:
        >>> out = convert_to_fp32({"logits": torch.ones(2, dtype=torch.bfloat16), "ids": torch.ones(2, dtype=torch.long)})
        >>> out["logits"].dtype, out["ids"].dtype
        (torch.float32, torch.int64)
    """
    if isinstance(tensor, torch.Tensor):
        return tensor.float() if tensor.dtype in _HALF_DTYPES else tensor
    return recursively_apply(_to_float32, tensor, test_type=_is_half_precision)


class ConvertOutputsToFp32:
    """Wrap a callable (a model's forward) so that its half-precision outputs come back as float32.

    The wrapper copies the wrapped callable's name and docstring. It pickles whenever the
    wrapped callable does (Accelerate's refuses to be pickled at all).

    Example:
        >>> forward = ConvertOutputsToFp32(lambda x: x.half() * 2)
        >>> forward(torch.ones(2)).dtype
        torch.float32
    """

    def __init__(self, model_forward: Callable[..., Any]) -> None:
        self.model_forward = model_forward
        functools.update_wrapper(self, model_forward)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return convert_to_fp32(self.model_forward(*args, **kwargs))

    def __reduce__(self) -> tuple[type, tuple[Callable[..., Any]]]:
        return (type(self), (self.model_forward,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_forward!r})"


def convert_outputs_to_fp32(model_forward: Callable[..., Any]) -> Callable[..., Any]:
    """Return a function that calls ``model_forward`` and casts its half-precision outputs to float32.

    The result is a plain function, so it binds as a method when set on a class, and its
    ``__wrapped__`` is the :class:`ConvertOutputsToFp32` doing the work; following
    ``__wrapped__`` twice leads back to ``model_forward``.

    Example:
        >>> model = torch.nn.Linear(2, 2).half()
        >>> forward = convert_outputs_to_fp32(model.forward)
        >>> forward(torch.ones(1, 2, dtype=torch.float16)).dtype
        torch.float32
        >>> forward.__wrapped__.__wrapped__ == model.forward
        True
    """
    wrapper = ConvertOutputsToFp32(model_forward)

    def forward(*args: Any, **kwargs: Any) -> Any:
        return wrapper(*args, **kwargs)

    forward.__wrapped__ = wrapper  # type: ignore[attr-defined]
    return forward
