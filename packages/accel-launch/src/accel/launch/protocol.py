"""The environment variables ``accel launch`` hands to every process it starts.

Which variable carries which setting, and when, is declared in the option table
(:mod:`accel.state.options`: ``env``, ``export``, ``export_if``); the script reads the same
names back (ACCEL_ first, then Accelerate's spelling). Torch-free.

Example:
    >>> env = protocol_env({"mixed_precision": "bf16", "cpu": True})
    >>> env["ACCEL_MIXED_PRECISION"], env["ACCEL_USE_CPU"], env["OMP_NUM_THREADS"]
    ('bf16', 'true', '1')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accel.state.env import PREFIX
from accel.state.options import OPTIONS, exported


def _put_settings(env: dict[str, str], prefix: str, settings: Mapping[str, Any]) -> None:
    """Set ``prefix + name`` in ``env`` for each setting that is not ``None`` (bools as flags)."""
    for name, value in settings.items():
        if value is not None:
            env[prefix + name] = (
                ("true" if value else "false") if isinstance(value, bool) else str(value)
            )


def protocol_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The variables for the resolved launcher settings ``values`` (see
    :func:`accel.launch.settings.resolve`): each option table entry with an ``export`` rule
    (:func:`accel.state.options.exported`), ``CUDA_VISIBLE_DEVICES`` from ``gpu_ids``, and the
    ``ACCEL_FP8_*`` variables of the config file's ``fp8_config`` section.

    Example:
        >>> protocol_env({"use_fsdp": True, "fsdp_version": 2})["ACCEL_FSDP_VERSION"]
        '2'
    """
    env: dict[str, str] = {}
    for entry in OPTIONS:
        text = exported(entry, values)
        if text is not None:
            env[entry.env[0]] = text
    if any(name.startswith(PREFIX + "PARALLELISM_CONFIG_") for name in env):
        env[PREFIX + "USE_PARALLELISM_CONFIG"] = "true"
    gpu_ids = values.get("gpu_ids")
    if gpu_ids and gpu_ids != "all" and not values.get("cpu"):
        env["CUDA_VISIBLE_DEVICES"] = str(gpu_ids)
    _put_settings(env, PREFIX + "FP8_", values.get("fp8_env") or {})
    return env
