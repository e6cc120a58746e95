"""Whether optional libraries are installed (Accelerate's ``is_*_available`` family).

Each check looks the package up without importing it, and also requires its distribution
metadata, so a stray folder named like the package does not count. Checks with a minimum
version compare the installed release number.

Example:
    >>> from accel.state.optional_packages import is_pytest_available
    >>> is_pytest_available()
    True
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable

from accel.state.availability import compare_versions
from accel.state.env_reading import parse_flag_from_env


def is_distribution_installed(import_name: str, distribution: str | None = None) -> bool:
    """Whether ``import_name`` is importable and its distribution (``distribution``) is installed.

    Example:
        >>> is_distribution_installed("pytest")
        True
        >>> is_distribution_installed("no_such_package_here")
        False
    """
    try:
        if importlib.util.find_spec(import_name) is None:
            return False
    except (ImportError, ValueError):
        return False
    try:
        importlib.metadata.metadata(distribution or import_name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _package_check(
    name: str, import_name: str, distribution: str | None = None, minimum: str | None = None
) -> Callable[[], bool]:
    """Build ``name()``: whether ``import_name`` is installed (at ``minimum`` or newer)."""

    @functools.cache
    def check() -> bool:
        if not is_distribution_installed(import_name, distribution):
            return False
        if minimum is None:
            return True
        installed = importlib.metadata.version(distribution or import_name)
        return compare_versions(installed, ">=", minimum)

    wanted = f"``{import_name}``" + (f" >= {minimum}" if minimum else "")
    check.__name__ = check.__qualname__ = name
    check.__module__ = __name__
    check.__doc__ = (
        f"Whether {wanted} is installed (found without importing it).\n\n"
        f"Example:\n    >>> isinstance({name}(), bool)\n    True\n"
    )
    return check


is_amdsmi_available = _package_check("is_amdsmi_available", "amdsmi")
is_boto3_available = _package_check("is_boto3_available", "boto3")
is_clearml_available = _package_check("is_clearml_available", "clearml")
is_comet_ml_available = _package_check("is_comet_ml_available", "comet_ml", "comet-ml")
is_dvclive_available = _package_check("is_dvclive_available", "dvclive")
is_import_timer_available = _package_check("is_import_timer_available", "import_timer")
is_lomo_available = _package_check("is_lomo_available", "lomo_optim", "lomo-optim")
is_matplotlib_available = _package_check("is_matplotlib_available", "matplotlib")
is_msamp_available = _package_check("is_msamp_available", "msamp", "ms-amp")
is_pandas_available = _package_check("is_pandas_available", "pandas")
is_peft_available = _package_check("is_peft_available", "peft")
is_pytest_available = _package_check("is_pytest_available", "pytest")
is_sagemaker_available = _package_check("is_sagemaker_available", "sagemaker")
is_schedulefree_available = _package_check("is_schedulefree_available", "schedulefree")
is_swanlab_available = _package_check("is_swanlab_available", "swanlab")
is_timm_available = _package_check("is_timm_available", "timm")
is_torchao_available = _package_check("is_torchao_available", "torchao", minimum="0.6.1")
is_torchdata_available = _package_check("is_torchdata_available", "torchdata")
is_torchdata_stateful_dataloader_available = _package_check(
    "is_torchdata_stateful_dataloader_available", "torchdata", minimum="0.8.0"
)
is_torchvision_available = _package_check("is_torchvision_available", "torchvision")
is_transformer_engine_available = _package_check(
    "is_transformer_engine_available", "transformer_engine", "transformer-engine"
)
is_triton_available = _package_check("is_triton_available", "triton")
is_wandb_available = _package_check("is_wandb_available", "wandb")
is_4bit_bnb_available = _package_check("is_4bit_bnb_available", "bitsandbytes", minimum="0.39.0")
is_8bit_bnb_available = _package_check("is_8bit_bnb_available", "bitsandbytes", minimum="0.37.2")


def is_tensorboard_available() -> bool:
    """Whether ``tensorboard`` or ``tensorboardX`` is installed.

    Example:
        >>> isinstance(is_tensorboard_available(), bool)
        True
    """
    return is_distribution_installed("tensorboard") or is_distribution_installed("tensorboardX")


def is_mlflow_available() -> bool:
    """Whether ``mlflow`` (full or ``mlflow-skinny``) is installed.

    Example:
        >>> isinstance(is_mlflow_available(), bool)
        True
    """
    return is_distribution_installed("mlflow") or is_distribution_installed(
        "mlflow", "mlflow-skinny"
    )


def is_pynvml_available() -> bool:
    """Whether NVML's Python bindings (``pynvml`` or ``nvidia-ml-py``) are installed.

    Example:
        >>> isinstance(is_pynvml_available(), bool)
        True
    """
    return is_distribution_installed("pynvml") or is_distribution_installed(
        "pynvml", "nvidia-ml-py"
    )


def is_trackio_available() -> bool:
    """Whether ``trackio`` is installed (it needs Python 3.10 or newer).

    Example:
        >>> isinstance(is_trackio_available(), bool)
        True
    """
    return sys.version_info >= (3, 10) and is_distribution_installed("trackio")


def is_rich_available() -> bool:
    """Whether ``rich`` is installed AND enabled with ``ACCELERATE_ENABLE_RICH=1``.

    Example:
        >>> from accel.state import patch_environment
        >>> with patch_environment(ACCELERATE_ENABLE_RICH="0"):
        ...     is_rich_available()
        False
    """
    return is_distribution_installed("rich") and parse_flag_from_env("ACCELERATE_ENABLE_RICH")


def is_aim_available() -> bool:
    """Whether ``aim`` 3.x is installed (the release line whose API the Aim tracker uses).

    Example:
        >>> isinstance(is_aim_available(), bool)
        True
    """
    if not is_distribution_installed("aim"):
        return False
    return compare_versions(importlib.metadata.version("aim"), "<", "4.0.0")


def is_bitsandbytes_multi_backend_available() -> bool:
    """Whether the installed bitsandbytes advertises its multi-backend (non-CUDA) build.

    This one imports bitsandbytes (which can take a minute on a small CPU machine).

    Example:
        >>> is_bitsandbytes_multi_backend_available()  # doctest: +SKIP
        True
    """
    if not is_distribution_installed("bitsandbytes"):
        return False
    import bitsandbytes

    return "multi_backend" in getattr(bitsandbytes, "features", set())


def is_transformer_engine_mxfp8_available() -> bool:
    """Whether Transformer Engine is installed and reports MXFP8 support on this machine.

    Example:
        >>> isinstance(is_transformer_engine_mxfp8_available(), bool)
        True
    """
    if not is_transformer_engine_available():
        return False
    from transformer_engine.pytorch.fp8 import check_mxfp8_support  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    return bool(check_mxfp8_support()[0])


def is_megatron_lm_available() -> bool:
    """Whether Megatron-LM is requested (``ACCELERATE_USE_MEGATRON_LM``) and installed.

    accel has no Megatron-LM integration; this answers the question for code that asks.

    Example:
        >>> isinstance(is_megatron_lm_available(), bool)
        True
    """
    if not parse_flag_from_env("ACCELERATE_USE_MEGATRON_LM"):
        return False
    if not is_distribution_installed("megatron", "megatron-core"):
        return False
    return compare_versions(importlib.metadata.version("megatron-core"), ">=", "0.8.0")
