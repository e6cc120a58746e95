"""Whether accelerator families and numeric formats beyond CUDA/XPU/NPU/MPS can be used.

Each check first looks for the vendor's torch plugin without importing it, so on a machine
without it the answer costs one ``find_spec``.

Example:
    >>> from accel.state.device_availability import is_hpu_available
    >>> is_hpu_available()
    False
"""

from __future__ import annotations

import functools
import importlib.util

from accel.state.availability import is_package_available, is_torch_version
from accel.state.optional_packages import (
    is_msamp_available,
    is_torchao_available,
    is_transformer_engine_available,
)


def _plugin_device(plugin: str, attribute: str, check_device: bool) -> bool:
    """Import ``plugin`` and ask ``torch.<attribute>`` whether a device is there."""
    if not is_package_available(plugin):
        return False
    import importlib

    import torch

    try:
        importlib.import_module(plugin)
    except Exception:  # a vendor plugin that cannot load means the device cannot be used
        return False
    backend = getattr(torch, attribute, None)
    if backend is None:
        return False
    try:
        return bool(backend.is_available()) and (not check_device or backend.device_count() > 0)
    except RuntimeError:
        return False


@functools.cache
def is_hpu_available(init_hccl: bool = False) -> bool:
    """Whether Intel Gaudi (HPU) can be used through ``habana_frameworks.torch``.

    Example:
        >>> isinstance(is_hpu_available(), bool)
        True
    """
    if importlib.util.find_spec("habana_frameworks") is None:
        return False
    if not _plugin_device("habana_frameworks.torch", "hpu", False):
        return False
    if init_hccl:
        import habana_frameworks.torch.distributed.hccl  # noqa: F401  # pyright: ignore[reportMissingImports]  # optional, not in the dev env
    return True


def is_habana_gaudi1() -> bool:
    """Whether the HPU is a first-generation Gaudi (which has no fp16).

    Example:
        >>> is_habana_gaudi1() if not is_hpu_available() else False
        False
    """
    if not is_hpu_available():
        return False
    import habana_frameworks.torch.utils.experimental as htexp  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    return htexp._get_device_type() == htexp.synDeviceType.synDeviceGaudi


@functools.cache
def is_mlu_available(check_device: bool = False) -> bool:
    """Whether Cambricon MLUs can be used (needs ``torch_mlu``).

    Example:
        >>> isinstance(is_mlu_available(), bool)
        True
    """
    return _plugin_device("torch_mlu", "mlu", check_device)


@functools.cache
def is_musa_available(check_device: bool = False) -> bool:
    """Whether Moore Threads MUSA GPUs can be used (needs ``torch_musa``).

    Example:
        >>> isinstance(is_musa_available(), bool)
        True
    """
    return _plugin_device("torch_musa", "musa", check_device)


@functools.cache
def is_sdaa_available(check_device: bool = False) -> bool:
    """Whether Tecorigin SDAA devices can be used (needs ``torch_sdaa``).

    Example:
        >>> isinstance(is_sdaa_available(), bool)
        True
    """
    return _plugin_device("torch_sdaa", "sdaa", check_device)


@functools.cache
def is_neuron_available(check_device: bool = False) -> bool:
    """Whether AWS Neuron devices can be used (needs ``torch_neuronx``).

    Example:
        >>> isinstance(is_neuron_available(), bool)
        True
    """
    return _plugin_device("torch_neuronx", "neuron", check_device)


def is_rocm_available() -> bool:
    """Whether torch is a ROCm (AMD) build and a GPU is visible.

    Example:
        >>> isinstance(is_rocm_available(), bool)
        True
    """
    import torch

    return torch.version.hip is not None and torch.cuda.is_available()


def is_xccl_available() -> bool:
    """Whether torch.distributed was built with Intel's XCCL backend.

    Example:
        >>> isinstance(is_xccl_available(), bool)
        True
    """
    import torch.distributed as dist

    check = getattr(dist.distributed_c10d, "is_xccl_available", None)
    return bool(check is not None and check())


def is_fp16_available() -> bool:
    """Whether float16 training can be used (everywhere except first-generation Gaudi).

    Example:
        >>> is_fp16_available()
        True
    """
    return not is_habana_gaudi1()


def is_fp8_available() -> bool:
    """Whether an FP8 library is installed (MS-AMP, Transformer Engine or torchao).

    Example:
        >>> isinstance(is_fp8_available(), bool)
        True
    """
    return is_msamp_available() or is_transformer_engine_available() or is_torchao_available()


def is_weights_only_available() -> bool:
    """Whether ``torch.load(weights_only=True)`` is supported (torch >= 2.4).

    Example:
        >>> is_weights_only_available()
        True
    """
    return is_torch_version(">=", "2.4.0")


def is_pippy_available() -> bool:
    """Whether torch ships pipeline parallelism (``torch.distributed.pipelining``, torch >= 2.4).

    Example:
        >>> is_pippy_available()
        True
    """
    return is_torch_version(">=", "2.4.0")


def get_current_device_type() -> tuple[str, str]:
    """``(device type, distributed type)`` of the accelerator family present, found without
    initialising a device (safe before ``fork``); ``("cuda", "MULTI_GPU")`` when none of the
    plugin families is present, as in Accelerate.

    Example:
        >>> get_current_device_type()[1].startswith("MULTI_")
        True
    """
    from accel.state.availability import is_npu_available, is_xpu_available

    families = (
        ("mlu", is_mlu_available),
        ("sdaa", is_sdaa_available),
        ("musa", is_musa_available),
        ("npu", is_npu_available),
        ("hpu", is_hpu_available),
        ("xpu", is_xpu_available),
        ("neuron", is_neuron_available),
    )
    for name, check in families:
        if check():
            return name, f"MULTI_{name.upper()}"
    return "cuda", "MULTI_GPU"
