"""FP8 training through torchao's float8 linear layers (``mixed_precision="fp8"``).

accel runs fp8 with torchao only: ``Linear`` layers whose sizes are multiples of 16 (except the
model's first and last ``Linear``, kept in higher precision for stability) become
``torchao.float8.Float8Linear``, and the rest of the forward runs under bf16 autocast. It needs
a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell) and ``torchao``;
:func:`check_fp8_support` says which is missing when ``Accelerator(...)`` is built.

Example:
    >>> check_fp8_support(torch.device("cpu"))  # doctest: +SKIP
    Traceback (most recent call last):
    ValueError: mixed_precision='fp8' needs ...
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch

MIN_CAPABILITY = (8, 9)


def fp8_missing(device: torch.device) -> list[str]:
    """What this job lacks for fp8 training on ``device`` (empty when nothing is missing).

    Example:
        >>> fp8_missing(torch.device("cpu"))[0]
        'a CUDA GPU (this job runs on cpu)'
    """
    missing = []
    if device.type != "cuda":
        missing.append(f"a CUDA GPU (this job runs on {device.type})")
    else:
        capability = torch.cuda.get_device_capability(device)
        if capability < MIN_CAPABILITY:
            missing.append(
                f"compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} "
                f"({torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]})"
            )
    if importlib.util.find_spec("torchao") is None:
        missing.append("the torchao library (pip install torchao)")
    return missing


def check_fp8_support(device: torch.device, source: str = "mixed_precision") -> None:
    """Raise ``ValueError`` naming what is missing for fp8 training on ``device``.

    Example:
        >>> check_fp8_support(torch.device("cpu"), "ACCEL_MIXED_PRECISION")  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: ACCEL_MIXED_PRECISION='fp8' needs a CUDA GPU (this job runs on cpu) ...
    """
    missing = fp8_missing(device)
    if missing:
        raise ValueError(
            f"{source}='fp8' needs {' and '.join(missing)}; accel trains in fp8 through "
            "torchao's float8 layers only. Use mixed_precision='bf16' instead"
        )


def first_and_last_linear(model: torch.nn.Module) -> set[str]:
    """Qualified names of the first and last ``nn.Linear`` of ``model`` (kept out of fp8).

    Example:
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> sorted(first_and_last_linear(m))
        ['0', '2']
    """
    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    return {names[0], names[-1]} if names else set()


def default_filter(model: torch.nn.Module) -> Callable[[torch.nn.Module, str], bool]:
    """The default choice of layers for fp8: ``Linear`` with both sizes multiples of 16,
    not the first or last ``Linear`` of ``model``.

    Example:
        >>> m = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(3)])
        >>> keep = default_filter(m)
        >>> [keep(m[i], str(i)) for i in range(3)]
        [False, True, False]
    """
    skipped = first_and_last_linear(model)

    def keep(module: torch.nn.Module, name: str) -> bool:
        if isinstance(module, torch.nn.Linear) and (
            module.in_features % 16 or module.out_features % 16
        ):
            return False
        return name not in skipped

    return keep


def float8_config(handler: Any = None) -> Any:
    """Build the ``torchao.float8.Float8LinearConfig`` for an ``FP8RecipeKwargs``.

    ``fp8_format`` picks the fp8 types: ``"HYBRID"`` (default) casts inputs and weights to
    e4m3 and output gradients to e5m2; ``"E4M3"``/``"E5M2"`` use one type for all.
    ``override_linear_precision=(fprop, dgrad, wgrad)`` keeps the chosen matmuls (forward,
    input gradient, weight gradient) in high precision. Scaling is dynamic, per tensor.

    Example:
        >>> float8_config(FP8RecipeKwargs(fp8_format="E4M3"))  # doctest: +SKIP
        Float8LinearConfig(...)
    """
    from torchao.float8 import CastConfig, Float8LinearConfig, ScalingType  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    fp8_format = getattr(handler, "fp8_format", None) or "HYBRID"
    fprop, dgrad, wgrad = getattr(handler, "override_linear_precision", None) or (False,) * 3
    forward_dtype = torch.float8_e5m2 if fp8_format == "E5M2" else torch.float8_e4m3fn
    backward_dtype = torch.float8_e4m3fn if fp8_format == "E4M3" else torch.float8_e5m2

    def cast(dtype: torch.dtype, high_precision: bool) -> Any:
        if high_precision:
            return CastConfig(scaling_type=ScalingType.DISABLED)
        return CastConfig(target_dtype=dtype)

    return Float8LinearConfig(
        cast_config_input=cast(forward_dtype, fprop),
        cast_config_weight=cast(forward_dtype, fprop),
        cast_config_grad_output=cast(backward_dtype, dgrad),
        cast_config_weight_for_grad_input=cast(forward_dtype, dgrad),
        cast_config_input_for_grad_weight=cast(forward_dtype, wgrad),
        cast_config_grad_output_for_grad_weight=cast(backward_dtype, wgrad),
        pad_inner_dim=True,
    )


def convert_to_fp8(model: torch.nn.Module, handler: Any = None) -> torch.nn.Module:
    """Swap ``model``'s eligible ``Linear`` layers for torchao ``Float8Linear`` (in place).

    Example:
        >>> model = convert_to_fp8(model, FP8RecipeKwargs())  # doctest: +SKIP
    """
    from torchao.float8 import convert_to_float8_training  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    return convert_to_float8_training(
        model, module_filter_fn=default_filter(model), config=float8_config(handler)
    )
