"""Mixed precision: checking the mode, autocast contexts, the fp16 grad scaler, fp32 outputs."""

from __future__ import annotations

import contextlib
import functools
import warnings
from types import MethodType
from typing import Any

import torch

from accel.ops import convert_to_fp32
from accel.state import PrecisionType, is_bf16_available

# fp8 computes its float8 layers in fp8 and everything else under bf16 autocast.
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}
_SCALED_DEVICES = ("cuda", "xpu", "npu", "mps", "hpu", "mlu", "musa")


@functools.cache
def cpu_fp16_missing() -> str:
    """What this torch lacks for fp16 training on CPU (``""`` when nothing is missing).

    fp16 on CPU needs ``torch.autocast("cpu", dtype=torch.float16)`` to really compute in
    float16 and ``torch.amp.GradScaler("cpu")`` for loss scaling.

    Example:
        >>> cpu_fp16_missing()
        ''
    """
    missing = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old torch warns, then disables autocast
            with torch.autocast("cpu", dtype=torch.float16):
                dtype = torch.nn.functional.linear(torch.ones(1, 1), torch.ones(1, 1)).dtype
        if dtype != torch.float16:
            missing.append("float16 CPU autocast")
    except (RuntimeError, TypeError):
        missing.append("float16 CPU autocast")
    try:
        torch.amp.GradScaler("cpu")
    except (AttributeError, RuntimeError, TypeError):
        missing.append('torch.amp.GradScaler("cpu")')
    return " and ".join(missing)


def check_mixed_precision(mode: Any, device: torch.device, source: str = "mixed_precision") -> str:
    """Validate a mixed-precision mode for ``device``; return it as a lower-case string.

    Example:
        >>> check_mixed_precision("BF16", torch.device("cpu"))
        'bf16'
    """
    value = str(mode.value if isinstance(mode, PrecisionType) else mode).lower()
    if value not in PrecisionType:
        raise ValueError(
            f"{source}={mode!r} is not a mixed-precision mode; use one of "
            f"{', '.join(PrecisionType.list())}"
        )
    if value == "fp16" and device.type not in _SCALED_DEVICES:
        if device.type != "cpu":
            raise ValueError(
                f"{source}='fp16' needs loss scaling, which torch offers on CPU and GPU-like "
                f"devices, but this job runs on {device.type}; use 'bf16' or 'no'"
            )
        missing = cpu_fp16_missing()
        if missing:
            raise ValueError(
                f"{source}='fp16' on CPU needs {missing}, which torch {torch.__version__} "
                "lacks; upgrade torch, or use mixed_precision='bf16' or 'no'"
            )
    if value == "bf16" and not is_bf16_available(ignore_tpu=True):
        raise ValueError(
            f"{source}='bf16': this {device.type} device does not support bfloat16; use 'fp16' "
            "or 'no'"
        )
    if value == "fp8":
        from accel.core.fp8 import check_fp8_support

        check_fp8_support(device, source)
    return value


def autocast_context(
    mode: str, device: torch.device, handler: Any = None
) -> contextlib.AbstractContextManager[Any]:
    """The ``torch.autocast`` context for ``mode`` (a no-op context for ``"no"``).

    ``handler`` is an ``AutocastKwargs`` (``enabled``, ``cache_enabled``).

    Example:
        >>> with autocast_context("bf16", torch.device("cpu")):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    dtype = _AUTOCAST_DTYPES.get(mode)
    if dtype is None:
        return contextlib.nullcontext()
    options = handler.to_kwargs() if handler is not None else {}
    return torch.autocast(device_type=device.type, dtype=dtype, **options)


def make_grad_scaler(mode: str, device: torch.device, handler: Any = None) -> Any:
    """A ``torch.amp.GradScaler`` for fp16 training, else ``None``.

    ``handler`` is a ``GradScalerKwargs``. On CPU this is ``torch.amp.GradScaler("cpu")``: it
    scales the loss, unscales the gradients and skips the step on inf/NaN like the GPU one.

    Example:
        >>> make_grad_scaler("bf16", torch.device("cpu")) is None
        True
    """
    if mode != "fp16":
        return None
    options = handler.to_kwargs() if handler is not None else {}
    return torch.amp.GradScaler(device.type, **options)


def wrap_forward_in_autocast(
    model: torch.nn.Module, mode: str, device: torch.device, handler: Any = None
) -> None:
    """Make ``model.forward`` run under autocast and return fp32 outputs; keeps the original.

    The original forward stays available as ``model._original_forward`` (used by
    ``unwrap_model(keep_fp32_wrapper=False)``).

    Example:
        >>> m = torch.nn.Linear(2, 2)
        >>> wrap_forward_in_autocast(m, "bf16", torch.device("cpu"))
        >>> m(torch.ones(1, 2)).dtype
        torch.float32
    """
    if mode not in _AUTOCAST_DTYPES or hasattr(model, "_original_forward"):
        return
    original = model.forward
    # torch types Module.__setattr__'s value as Tensor | Module; a plain attribute is fine
    model._original_forward = original  # pyright: ignore[reportArgumentType]

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        with autocast_context(mode, device, handler):
            outputs = original(*args, **kwargs)
        return convert_to_fp32(outputs)

    if hasattr(original, "__func__"):
        func = original.__func__

        @functools.wraps(func)
        def method(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            with autocast_context(mode, device, handler):
                outputs = func(self, *args, **kwargs)
            return convert_to_fp32(outputs)

        model.forward = MethodType(method, model)
    else:
        model.forward = forward


def unwrap_forward(model: torch.nn.Module) -> None:
    """Undo :func:`wrap_forward_in_autocast`.

    Example:
        >>> m = torch.nn.Linear(2, 2); wrap_forward_in_autocast(m, "bf16", torch.device("cpu"))
        >>> unwrap_forward(m); hasattr(m, "_original_forward")
        False
    """
    original = model.__dict__.pop("_original_forward", None)
    if original is None:
        return
    if getattr(original, "__self__", None) is model and "forward" in model.__dict__:
        del model.forward
    else:
        model.forward = original
