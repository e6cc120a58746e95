"""Checks for optional packages and devices. Package checks never import the package."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import operator
import os
import re

_OPERATIONS = {
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    "<": operator.lt,
}


@functools.cache
def is_package_available(name: str) -> bool:
    """Whether ``name`` can be imported, found without importing it.

    Example:
        >>> is_package_available("os")
        True
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _version_tuple(version: str) -> tuple[int, ...]:
    release = re.match(r"\d+(?:\.\d+)*", version.strip())
    if release is None:
        raise ValueError(f"cannot read a version number from {version!r} (expected e.g. '2.4.0')")
    parts = [int(p) for p in release.group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def compare_versions(installed: str, operation: str, version: str) -> bool:
    """Compare two release numbers (local tags such as ``+cu128`` are ignored).

    Example:
        >>> compare_versions("2.5.1+cpu", ">=", "2.4")
        True
    """
    if operation not in _OPERATIONS:
        raise ValueError(f"unknown comparison {operation!r}; use one of {', '.join(_OPERATIONS)}")
    return _OPERATIONS[operation](_version_tuple(installed), _version_tuple(version))


def is_torch_version(operation: str, version: str) -> bool:
    """Compare the installed torch version with ``version``.

    Example:
        >>> is_torch_version(">=", "1.0")
        True
    """
    return compare_versions(importlib.metadata.version("torch"), operation, version)


def is_cuda_available() -> bool:
    """Whether a CUDA device can be used (asks NVML first, so no CUDA context is created).

    Example:
        >>> isinstance(is_cuda_available(), bool)
        True
    """
    import torch

    return torch.cuda.is_available()


def is_mps_available(min_version: str = "1.12") -> bool:
    """Whether Apple's Metal backend is built and usable with torch ``>= min_version``.

    Example:
        >>> isinstance(is_mps_available(), bool)
        True
    """
    import torch

    if not is_torch_version(">=", min_version):
        return False
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available() and backend.is_built())


def is_xpu_available(check_device: bool = False) -> bool:
    """Whether torch has a usable Intel XPU (``check_device`` also requires a device).

    Example:
        >>> isinstance(is_xpu_available(), bool)
        True
    """
    import torch

    xpu = getattr(torch, "xpu", None)
    if xpu is None or not xpu.is_available():
        return False
    return not check_device or xpu.device_count() > 0


def is_npu_available(check_device: bool = False) -> bool:
    """Whether Ascend NPUs can be used (needs the ``torch_npu`` package).

    Example:
        >>> isinstance(is_npu_available(), bool)
        True
    """
    if not is_package_available("torch_npu"):
        return False
    import torch
    import torch_npu  # noqa: F401  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    npu = getattr(torch, "npu", None)
    if npu is None or not npu.is_available():
        return False
    return not check_device or npu.device_count() > 0


def is_ipex_available() -> bool:
    """Whether Intel Extension for PyTorch is installed.

    Example:
        >>> isinstance(is_ipex_available(), bool)
        True
    """
    return is_package_available("intel_extension_for_pytorch")


def is_torch_xla_available(check_is_tpu: bool = False, check_is_gpu: bool = False) -> bool:
    """Whether torch-xla is installed; with a check flag, whether it drives a TPU (or GPU).

    The device check reads ``PJRT_DEVICE`` and does not start the XLA runtime.

    Example:
        >>> isinstance(is_torch_xla_available(), bool)
        True
    """
    if not is_package_available("torch_xla"):
        return False
    device = os.environ.get("PJRT_DEVICE", "").upper()
    if check_is_tpu:
        return device == "TPU"
    if check_is_gpu:
        return device in ("GPU", "CUDA")
    return True


def is_tpu_available(check_device: bool = True) -> bool:
    """Whether a TPU is usable through torch-xla (Accelerate's older name).

    Example:
        >>> isinstance(is_tpu_available(), bool)
        True
    """
    return is_torch_xla_available(check_is_tpu=check_device)


def is_bf16_available(ignore_tpu: bool = False) -> bool:
    """Whether bfloat16 compute is supported on the default device.

    Example:
        >>> isinstance(is_bf16_available(), bool)
        True
    """
    import torch

    if not ignore_tpu and is_torch_xla_available(check_is_tpu=True):
        return True
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if is_mps_available():
        return is_torch_version(">=", "2.3")
    return True


def is_deepspeed_available() -> bool:
    """Whether DeepSpeed is installed.

    Example:
        >>> isinstance(is_deepspeed_available(), bool)
        True
    """
    return is_package_available("deepspeed")


def is_safetensors_available() -> bool:
    """Whether safetensors is installed.

    Example:
        >>> isinstance(is_safetensors_available(), bool)
        True
    """
    return is_package_available("safetensors")


def is_datasets_available() -> bool:
    """Whether Hugging Face ``datasets`` is installed.

    Example:
        >>> isinstance(is_datasets_available(), bool)
        True
    """
    return is_package_available("datasets")


def is_transformers_available() -> bool:
    """Whether Hugging Face ``transformers`` is installed.

    Example:
        >>> isinstance(is_transformers_available(), bool)
        True
    """
    return is_package_available("transformers")
