"""Config-file sections of Accelerate that ``accel launch`` hands on, or refuses (torch-free).

- ``fp8_config`` becomes ``ACCEL_FP8_<NAME>`` variables, read by ``FP8RecipeKwargs`` in the
  script (which honours or refuses each one).
- ``megatron_lm_config`` / ``distributed_type: MEGATRON_LM`` ask for Megatron-LM, which accel
  does not implement: refused, naming the key, rather than silently launching a plain job.
  (``parallelism_config`` is a launcher option section, see :mod:`accel.launch.settings`.)

Example:
    >>> fp8_env({"fp8_backend": "AO", "fp8_override_linear_precision": [True, False, False]})
    {'BACKEND': 'AO', 'OVERRIDE_FPROP': 'true', 'OVERRIDE_DGRAD': 'false', 'OVERRIDE_WGRAD': 'false'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# fp8_config key (after Accelerate's "fp8_" prefix rule) -> ACCEL_FP8_<name>
_FP8_NAMES = {
    "fp8_backend": "BACKEND",
    "fp8_use_autocast_during_eval": "USE_AUTOCAST_DURING_EVAL",
    "fp8_margin": "MARGIN",
    "fp8_interval": "INTERVAL",
    "fp8_format": "FORMAT",
    "fp8_amax_history_length": "AMAX_HISTORY_LEN",
    "fp8_amax_history_len": "AMAX_HISTORY_LEN",
    "fp8_amax_compute_algorithm": "AMAX_COMPUTE_ALGO",
    "fp8_amax_compute_algo": "AMAX_COMPUTE_ALGO",
    "fp8_optimization_level": "OPT_LEVEL",
    "fp8_opt_level": "OPT_LEVEL",
}
# torchao options of Accelerate's AORecipeKwargs: accel always pads and never gathers in fp8.
_FP8_FIXED = {"fp8_pad_inner_dim": True, "fp8_enable_fsdp_float8_all_gather": False}


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def fp8_env(flat: Mapping[str, Any]) -> dict[str, str]:
    """The ``ACCEL_FP8_*`` names (without the prefix) and values for a flattened config.

    Raises ``ValueError`` for a torchao option accel does not offer.

    Example:
        >>> fp8_env({"fp8_format": "E4M3", "debug": True})
        {'FORMAT': 'E4M3'}
    """
    env: dict[str, str] = {}
    for key, value in flat.items():
        if value is None or not key.startswith("fp8_"):
            continue
        if key in _FP8_FIXED:
            if bool(value) != _FP8_FIXED[key]:
                raise ValueError(
                    f"fp8_config.{key}={value!r}: accel's torchao fp8 runs with "
                    f"{key.removeprefix('fp8_')}={_FP8_FIXED[key]} only; remove the key"
                )
        elif key == "fp8_override_linear_precision":
            parts = value if isinstance(value, (list, tuple)) else [value] * 3
            if len(parts) != 3:
                raise ValueError(
                    f"fp8_config.{key}={value!r} must list three booleans (fprop, dgrad, wgrad)"
                )
            for part, flag in zip(("FPROP", "DGRAD", "WGRAD"), parts, strict=True):
                env[f"OVERRIDE_{part}"] = _text(bool(flag))
        elif key in _FP8_NAMES:
            env[_FP8_NAMES[key]] = _text(value)
        else:
            raise ValueError(
                f"fp8_config.{key} is not an fp8 setting; known: {', '.join(sorted(_FP8_NAMES))}"
            )
    return env


def refuse_unimplemented(explicit: Mapping[str, Any], where: str) -> None:
    """Raise ``ValueError`` for a section asking for Megatron-LM.

    Example:
        >>> refuse_unimplemented({"parallelism_config": {"parallelism_config_tp_size": 1}}, "c.yaml")
        >>> refuse_unimplemented({"distributed_type": "MEGATRON_LM"}, "c.yaml")
        Traceback (most recent call last):
        ValueError: c.yaml: distributed_type=MEGATRON_LM asks for Megatron-LM, which accel does not implement; ...
    """
    if str(explicit.get("distributed_type", "")).upper() == "MEGATRON_LM":
        raise ValueError(
            f"{where}: distributed_type=MEGATRON_LM asks for Megatron-LM, which accel does not "
            "implement; use FSDP or DEEPSPEED"
        )
    megatron = {
        k: v for k, v in (explicit.get("megatron_lm_config") or {}).items() if v is not None
    }
    if megatron:
        raise ValueError(
            f"{where}: megatron_lm_config ({', '.join(sorted(megatron))}) asks for Megatron-LM, "
            "which accel does not implement; remove the section"
        )
