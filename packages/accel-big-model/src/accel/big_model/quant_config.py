"""``BnbQuantizationConfig``: what :func:`load_and_quantize_model` quantizes, and how.

Torch-light on purpose: importing this module imports torch but never bitsandbytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from accel.state.enums import CustomDtype
from accel.state.process_logging import warn_on_main_process

#: ``backend`` values: bitsandbytes layers, or accel's pure-torch weight-only layers.
BACKENDS = ("bitsandbytes", "torch")
_DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_QUANT_TYPES = ("fp4", "nf4")


def _bad(name: str, value: Any, valid: str) -> ValueError:
    return ValueError(f"BnbQuantizationConfig.{name}={value!r} is not valid; {valid}")


def _as_dtype(name: str, value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        key = value.replace("torch.", "")
        key = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(key, key)
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    raise _bad(name, value, "use 'fp32', 'fp16', 'bf16' or a torch.dtype")


@dataclass
class BnbQuantizationConfig:
    """How to quantize the ``nn.Linear`` layers of a model (bitsandbytes' 8-bit or 4-bit).

    Same fields, defaults and checks as Accelerate's class, plus ``backend``:

    - ``load_in_8bit`` / ``load_in_4bit``: exactly one must be true.
    - ``llm_int8_threshold`` (6.0): LLM.int8() outlier threshold (8-bit bitsandbytes only).
    - ``bnb_4bit_quant_type`` (``"fp4"``): ``"fp4"`` or ``"nf4"`` (bitsandbytes 4-bit only).
    - ``bnb_4bit_use_double_quant`` (False): quantize the 4-bit scales again.
    - ``bnb_4bit_compute_dtype`` (``"fp16"``): ``"fp32"``, ``"fp16"``, ``"bf16"`` or a dtype.
    - ``torch_dtype``: dtype of the layers left unquantized (default float16 for 8-bit, the
      compute dtype for 4-bit); ``"fp32"``/``"fp16"``/``"bf16"`` or a dtype.
    - ``skip_modules``: module names not to quantize (kept in ``torch_dtype``); default: the
      output head and tied weights (see :func:`get_keys_to_not_convert`).
    - ``keep_in_fp32_modules``: module names not to quantize, kept in float32.
    - ``backend`` (accel only, default ``"bitsandbytes"``): ``"torch"`` uses accel's
      pure-torch :class:`~accel.big_model.weight_only.WeightOnlyLinear` instead (int8 per
      channel / int4 per group of 64 columns, dequantized in forward; no extra package, any
      device). ``llm_int8_threshold``, ``bnb_4bit_quant_type`` and
      ``bnb_4bit_use_double_quant`` do not apply to it.

    After checks, string dtypes are torch dtypes and ``target_dtype`` is ``torch.int8`` or
    ``CustomDtype.INT4`` (used to size the model for a device map).

    Example:
        >>> config = BnbQuantizationConfig(load_in_4bit=True, bnb_4bit_compute_dtype="bf16")
        >>> config.torch_dtype, config.target_dtype
        (torch.bfloat16, <CustomDtype.INT4: 'int4'>)
        >>> BnbQuantizationConfig(load_in_8bit=True, backend="torch").torch_dtype
        torch.float16
        >>> BnbQuantizationConfig(load_in_4bit=True, bnb_4bit_quant_type="int4")
        Traceback (most recent call last):
        ...
        ValueError: BnbQuantizationConfig.bnb_4bit_quant_type='int4' is not valid; use one of 'fp4', 'nf4'
    """

    load_in_8bit: bool = False
    llm_int8_threshold: float = 6.0
    load_in_4bit: bool = False
    bnb_4bit_quant_type: str = "fp4"
    bnb_4bit_use_double_quant: bool = False
    bnb_4bit_compute_dtype: Any = "fp16"
    torch_dtype: Any = None
    skip_modules: list[str] | None = None
    keep_in_fp32_modules: list[str] | None = None
    backend: str = "bitsandbytes"
    target_dtype: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        for name in ("load_in_8bit", "load_in_4bit", "bnb_4bit_use_double_quant"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise _bad(name, value, "use True or False")
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError(
                "BnbQuantizationConfig: load_in_4bit and load_in_8bit are both True; set one"
            )
        if not self.load_in_4bit and not self.load_in_8bit:
            raise ValueError(
                "BnbQuantizationConfig: load_in_4bit and load_in_8bit are both False; set one"
            )
        threshold = self.llm_int8_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise _bad("llm_int8_threshold", threshold, "use a number (default 6.0)")
        if self.bnb_4bit_quant_type not in _QUANT_TYPES:
            raise _bad("bnb_4bit_quant_type", self.bnb_4bit_quant_type, "use one of 'fp4', 'nf4'")
        if self.backend not in BACKENDS:
            raise _bad("backend", self.backend, "use one of 'bitsandbytes', 'torch'")
        self.bnb_4bit_compute_dtype = _as_dtype(
            "bnb_4bit_compute_dtype", self.bnb_4bit_compute_dtype
        )
        for name in ("skip_modules", "keep_in_fp32_modules"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise _bad(name, value, "use a list of module names (str) or None")
        self.target_dtype = CustomDtype.INT4 if self.load_in_4bit else torch.int8
        if self.load_in_4bit and threshold != 6.0:
            warn_on_main_process(
                "llm_int8_threshold only applies to models loaded in 8-bit", stacklevel=3
            )
        if self.torch_dtype is None:
            self.torch_dtype = torch.float16 if self.load_in_8bit else self.bnb_4bit_compute_dtype
        else:
            self.torch_dtype = _as_dtype("torch_dtype", self.torch_dtype)
