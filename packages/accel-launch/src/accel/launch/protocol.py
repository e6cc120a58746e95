"""The environment variables ``accel launch`` hands to every process it starts.

Settings travel as ``ACCEL_<NAME>`` (read back by :mod:`accel.state.env`, which also accepts
Accelerate's ``ACCELERATE_<NAME>``), FSDP options as ``ACCEL_FSDP_<NAME>`` (read by
``accel.core``'s ``FullyShardedDataParallelPlugin``, which also accepts ``FSDP_<NAME>``).
Torch-free.

Example:
    >>> env = protocol_env({"mixed_precision": "bf16", "cpu": True})
    >>> env["ACCEL_MIXED_PRECISION"], env["ACCEL_USE_CPU"], env["OMP_NUM_THREADS"]
    ('bf16', 'true', '1')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _flag(value: Any) -> str:
    return "true" if value else "false"


def _put_settings(env: dict[str, str], prefix: str, settings: Mapping[str, Any]) -> None:
    """Set ``prefix + name`` in ``env`` for each setting that is not ``None`` (bools as flags)."""
    for name, value in settings.items():
        if value is not None:
            env[prefix + name] = _flag(value) if isinstance(value, bool) else str(value)


def protocol_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The ``ACCEL_*`` (and ``OMP_NUM_THREADS``, ``CUDA_VISIBLE_DEVICES``) variables for the
    resolved launcher settings ``values`` (see :func:`accel.launch.settings.resolve`).

    Example:
        >>> protocol_env({"use_fsdp": True, "fsdp_version": 2})["ACCEL_FSDP_VERSION"]
        '2'
    """
    get = values.get
    env = {
        "ACCEL_USE_CPU": _flag(get("cpu")),
        "ACCEL_MIXED_PRECISION": str(get("mixed_precision") or "no"),
        "ACCEL_DEBUG_MODE": _flag(get("debug")),
        "ACCEL_DYNAMO_BACKEND": str(get("dynamo_backend") or "no").upper(),
        "ACCEL_DYNAMO_MODE": str(get("dynamo_mode") or "default"),
        "ACCEL_DYNAMO_USE_FULLGRAPH": _flag(get("dynamo_use_fullgraph")),
        "ACCEL_DYNAMO_USE_DYNAMIC": _flag(get("dynamo_use_dynamic")),
        "OMP_NUM_THREADS": str(get("num_cpu_threads_per_process") or 1),
    }
    if get("tpu"):
        env["ACCEL_USE_XLA"] = "true"
    gpu_ids = get("gpu_ids")
    if gpu_ids and gpu_ids != "all" and not get("cpu"):
        env["CUDA_VISIBLE_DEVICES"] = str(gpu_ids)
    if get("gradient_accumulation_steps") is not None:
        env["ACCEL_GRADIENT_ACCUMULATION_STEPS"] = str(get("gradient_accumulation_steps"))
    if get("gradient_clipping") is not None:
        env["ACCEL_GRADIENT_CLIPPING"] = str(get("gradient_clipping"))
    _put_settings(env, "ACCEL_FP8_", get("fp8_env") or {})
    if get("use_fsdp"):
        env["ACCEL_USE_FSDP"] = "true"
        fsdp = {
            "VERSION": get("fsdp_version"),
            "RESHARD_AFTER_FORWARD": get("fsdp_reshard_after_forward"),
            "OFFLOAD_PARAMS": get("fsdp_offload_params"),
            "AUTO_WRAP_POLICY": get("fsdp_auto_wrap_policy"),
            "TRANSFORMER_CLS_TO_WRAP": get("fsdp_transformer_layer_cls_to_wrap"),
            "MIN_NUM_PARAMS": get("fsdp_min_num_params"),
            "STATE_DICT_TYPE": get("fsdp_state_dict_type"),
            "ACTIVATION_CHECKPOINTING": get("fsdp_activation_checkpointing"),
            "CPU_RAM_EFFICIENT_LOADING": get("fsdp_cpu_ram_efficient_loading"),
        }
        _put_settings(env, "ACCEL_FSDP_", fsdp)
    nd = {
        name.upper(): get("parallelism_config_" + name)
        for name in ("dp_replicate_size", "dp_shard_size", "tp_size", "cp_size", "sp_size",
                     "cp_comm_strategy")
    }  # fmt: skip
    if any(value is not None for value in nd.values()):
        env["ACCEL_USE_PARALLELISM_CONFIG"] = "true"
        _put_settings(env, "ACCEL_PARALLELISM_CONFIG_", nd)
    if get("use_deepspeed"):
        env["ACCEL_USE_DEEPSPEED"] = "true"
        deepspeed = {
            "ZERO_STAGE": get("zero_stage"),
            "OFFLOAD_OPTIMIZER_DEVICE": get("offload_optimizer_device"),
            "OFFLOAD_PARAM_DEVICE": get("offload_param_device"),
            "CONFIG_FILE": get("deepspeed_config_file"),
            "ZERO3_INIT": get("zero3_init_flag"),
            "ZERO3_SAVE_16BIT_MODEL": get("zero3_save_16bit_model"),
            "OFFLOAD_OPTIMIZER_NVME_PATH": get("offload_optimizer_nvme_path"),
            "OFFLOAD_PARAM_NVME_PATH": get("offload_param_nvme_path"),
            "MOE_LAYER_CLS_NAMES": get("deepspeed_moe_layer_cls_names"),
        }
        _put_settings(env, "ACCEL_DEEPSPEED_", deepspeed)
    return env
