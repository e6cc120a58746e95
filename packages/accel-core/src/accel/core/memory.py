"""Memory helpers: free cached device memory, and find a batch size that fits.

:func:`find_executable_batch_size` runs a function with a starting batch size and, each time it
fails with an out-of-memory error, frees memory, shrinks the batch size (to 90 %, as Accelerate
does, or with your own rule) and tries again. Any other error goes through untouched.

Example:
    >>> @find_executable_batch_size(starting_batch_size=8)
    ... def train(batch_size):
    ...     return batch_size
    >>> train()
    8
"""

from __future__ import annotations

import functools
import gc
import inspect
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "clear_device_cache",
    "find_executable_batch_size",
    "release_memory",
    "should_reduce_batch_size",
]

# Messages of out-of-memory errors that torch raises as a plain RuntimeError.
_OOM_MESSAGES = (
    " out of memory.",  # CUDA, ROCm/HIP, XPU
    "CUDA out of memory",
    "XPU out of memory",
    "NPU out of memory",
    "MPS backend out of memory",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",  # cuDNN's answer to a batch too big
    "DefaultCPUAllocator: can't allocate memory",  # CPU
    "PT_DEVMEM Allocation failed",  # HPU
)

_DEVICE_MODULES = ("cuda", "xpu", "npu", "mlu", "musa", "mps")


def clear_device_cache(garbage_collection: bool = False) -> None:
    """Return cached, unused accelerator memory to the device (``empty_cache``).

    With ``garbage_collection=True``, run ``gc.collect()`` first so that memory held by
    unreachable objects is released too (slow; use sparingly).

    Example:
        >>> clear_device_cache(garbage_collection=True)
    """
    if garbage_collection:
        gc.collect()
    for name in _DEVICE_MODULES:
        module = getattr(torch, name, None)
        if module is None or not hasattr(module, "empty_cache"):
            continue
        available = getattr(module, "is_available", None)
        try:
            if available is not None and available():
                module.empty_cache()
        except RuntimeError:  # a backend compiled in but unusable here
            continue


def release_memory(*objects: Any) -> list[None]:
    """Drop references to ``objects``, collect garbage and empty device caches.

    Returns one ``None`` per object; reassign them so the caller's names let go too.

    Example:
        >>> a, b = torch.ones(4), torch.ones(4)
        >>> a, b = release_memory(a, b)
        >>> a is None and b is None
        True
    """
    result: list[None] = [None for _ in objects]
    del objects
    clear_device_cache(garbage_collection=True)
    return result


def should_reduce_batch_size(exception: BaseException) -> bool:
    """Whether ``exception`` is an out-of-memory error (so a smaller batch might fit).

    True for ``torch.OutOfMemoryError`` (CUDA, XPU, ...) and for the ``RuntimeError`` messages
    torch uses for out-of-memory on CUDA, XPU, NPU, MPS, HPU and CPU, and cuDNN's
    ``CUDNN_STATUS_NOT_SUPPORTED``.

    Example:
        >>> should_reduce_batch_size(torch.OutOfMemoryError("CUDA out of memory."))
        True
        >>> should_reduce_batch_size(ValueError("bad input"))
        False
    """
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exception, oom_type):
        return True
    if isinstance(exception, RuntimeError) and exception.args:
        message = str(exception.args[0])
        return any(text in message for text in _OOM_MESSAGES)
    return False


def find_executable_batch_size(
    function: Callable[..., Any] | None = None,
    starting_batch_size: int = 128,
    reduce_batch_size_fn: Callable[[], int] | None = None,
) -> Any:
    """Decorator: call ``function(batch_size, ...)``, shrinking ``batch_size`` on out-of-memory.

    ``function`` takes the batch size as its first parameter; callers pass only the other
    arguments. On an out-of-memory error (see :func:`should_reduce_batch_size`) memory is freed
    (``gc.collect()`` + ``empty_cache``) and the batch size becomes ``int(batch_size * 0.9)``
    (Accelerate's rule), or whatever ``reduce_batch_size_fn()`` returns. Reaching 0 raises
    ``RuntimeError``; any other exception propagates unchanged. The size that worked is kept
    for the next call of the decorated function.

    Example:
        >>> @find_executable_batch_size(starting_batch_size=100)
        ... def train(batch_size, limit):
        ...     if batch_size > limit:
        ...         raise torch.OutOfMemoryError("CUDA out of memory.")
        ...     return batch_size
        >>> train(80)
        72
    """
    if function is None:
        return functools.partial(
            find_executable_batch_size,
            starting_batch_size=starting_batch_size,
            reduce_batch_size_fn=reduce_batch_size_fn,
        )
    if isinstance(starting_batch_size, bool) or not isinstance(starting_batch_size, int):
        raise TypeError(
            f"starting_batch_size must be an int, got {type(starting_batch_size).__name__} "
            f"{starting_batch_size!r}"
        )

    batch_size = starting_batch_size

    def ninety_percent() -> int:
        return int(batch_size * 0.9)

    reduce = ninety_percent if reduce_batch_size_fn is None else reduce_batch_size_fn
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        params = None

    @functools.wraps(function)
    def decorator(*args: Any, **kwargs: Any) -> Any:
        nonlocal batch_size
        if params is not None:
            positional = [
                p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
            if not varargs and len(positional) < len(args) + 1:
                shown = ", ".join(
                    f"{p.name}={value!r}" for p, value in zip(positional[1:], args[1:])
                )
                raise TypeError(
                    f"{function.__name__}() got the batch size as its first argument, but "
                    f"find_executable_batch_size passes it already; call "
                    f"{function.__name__}({shown}) instead"
                )
        clear_device_cache(garbage_collection=True)
        while True:
            if batch_size <= 0:
                raise RuntimeError(
                    f"No executable batch size found for {function.__name__}(): every batch "
                    f"size down from {starting_batch_size} ran out of memory (reached zero)."
                )
            try:
                return function(batch_size, *args, **kwargs)
            except Exception as error:
                if not should_reduce_batch_size(error):
                    raise
            # Outside the except block, so the traceback (and the tensors it holds) is freed.
            clear_device_cache(garbage_collection=True)
            new_size = reduce()
            if isinstance(new_size, bool) or not isinstance(new_size, int):
                raise TypeError(
                    f"reduce_batch_size_fn must return an int, got {type(new_size).__name__} "
                    f"{new_size!r}"
                )
            batch_size = new_size

    return decorator
