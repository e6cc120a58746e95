"""What ``accel launch`` runs with: flags > environment > config file > defaults.

:func:`resolve` is a pure function: it takes the flags the user typed, an environment mapping
and the (flattened) config file, and returns every setting with the place it came from. It
never reads ``os.environ`` or the disk itself, so it is tested with a table of cases.

Example:
    >>> r = resolve({"mixed_precision": None}, {"ACCEL_MIXED_PRECISION": "bf16"}, {})
    >>> r.values["mixed_precision"], r.sources["mixed_precision"]
    ('bf16', 'env ACCEL_MIXED_PRECISION')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accel.state.env import str_to_bool

MIXED_PRECISIONS = ("no", "fp16", "bf16", "fp8")
DYNAMO_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RDZV_BACKENDS = ("static", "c10d", "etcd", "etcd-v2")
OFFLOAD_DEVICES = ("none", "cpu", "nvme")
AUTO_WRAP_POLICIES = ("TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP")
STATE_DICT_TYPES = ("FULL_STATE_DICT", "SHARDED_STATE_DICT")
CP_COMM_STRATEGIES = ("allgather", "alltoall")
PARALLELISM_SIZES = ("dp_replicate_size", "dp_shard_size", "tp_size", "cp_size", "sp_size")
DYNAMO_BACKENDS = (
    "no",
    "eager",
    "aot_eager",
    "inductor",
    "aot_ts_nvfuser",
    "nvprims_nvfuser",
    "cudagraphs",
    "ofi",
    "fx2trt",
    "onnxrt",
    "tensorrt",
    "aot_torchxla_trace_once",
    "torchxla_trace_once",
    "ipex",
    "tvm",
    "hpu_backend",
    "neuron",
)


class SettingError(ValueError):
    """A setting has a bad value; the message names the value, its source and what is valid.

    Example:
        >>> str(SettingError("--num_processes=0 must be at least 1"))
        '--num_processes=0 must be at least 1'
    """


def _accel(name: str) -> tuple[str, str]:
    return ("ACCEL_" + name, "ACCELERATE_" + name)


def _fsdp(name: str) -> tuple[str, str]:
    return ("ACCEL_FSDP_" + name, "FSDP_" + name)


def _nd(name: str) -> tuple[str, str]:
    return ("ACCEL_PARALLELISM_CONFIG_" + name, "PARALLELISM_CONFIG_" + name)


def _to_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return str_to_bool(str(value), source=where)
    except ValueError as error:
        raise SettingError(str(error)) from None


def _int_at_least(low: int, high: int | None = None) -> Callable[[Any, str], int]:
    def parse(value: Any, where: str) -> int:
        try:
            number = int(value)
            if isinstance(value, float) and number != value:
                raise ValueError
        except (TypeError, ValueError):
            raise SettingError(f"{where}={value!r} must be an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingError(f"{where}={value!r} must be {bound}")
        return number

    return parse


def _float(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{where}={value!r} must be a number") from None


def _text(value: Any, where: str) -> str:
    return str(value)


def _choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[Any, str], str]:
    def parse(value: Any, where: str) -> str:
        text = str(value).upper() if upper else str(value).lower()
        if text not in choices:
            raise SettingError(
                f"{where}={value!r} is not valid; expected one of {', '.join(choices)}"
            )
        return text

    return parse


def _gpu_ids(value: Any, where: str) -> str:
    text = str(value).replace(" ", "")
    if text == "all":
        return text
    parts = text.split(",")
    if not all(part.isdigit() for part in parts):
        raise SettingError(
            f"{where}={value!r} must be 'all' or comma-separated GPU indices like 0,1"
        )
    return text


@dataclass(frozen=True)
class Option:
    """One setting: its default, the env vars and config keys that may supply it, its parser.

    Example:
        >>> Option("debug", False, _accel("DEBUG_MODE"), ("debug",), _to_bool).env
        ('ACCEL_DEBUG_MODE', 'ACCELERATE_DEBUG_MODE')
    """

    name: str
    default: Any
    env: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    parse: Callable[[Any, str], Any] = _text


_bool = _to_bool
OPTIONS: tuple[Option, ...] = (
    Option("num_processes", None, (), ("num_processes",), _int_at_least(1)),
    Option("num_machines", 1, (), ("num_machines",), _int_at_least(1)),
    Option("machine_rank", 0, (), ("machine_rank",), _int_at_least(0)),
    Option("main_process_ip", None, (), ("main_process_ip",), _text),
    Option("main_process_port", None, (), ("main_process_port",), _int_at_least(0, 65535)),
    Option("rdzv_backend", "static", (), ("rdzv_backend",), _choice(RDZV_BACKENDS)),
    Option("same_network", False, (), ("same_network",), _bool),
    Option("max_restarts", 0, (), ("max_restarts",), _int_at_least(0)),
    Option("monitor_interval", 0.1, (), ("monitor_interval",), _float),
    Option("cpu", False, _accel("USE_CPU"), ("use_cpu", "cpu"), _bool),
    Option("multi_gpu", False, (), ("multi_gpu",), _bool),
    Option("tpu", False, _accel("USE_XLA"), ("tpu",), _bool),
    Option("gpu_ids", "all", (), ("gpu_ids",), _gpu_ids),
    Option("mixed_precision", "no", _accel("MIXED_PRECISION"), ("mixed_precision",), _choice(MIXED_PRECISIONS)),
    Option("debug", False, _accel("DEBUG_MODE"), ("debug",), _bool),
    Option("num_cpu_threads_per_process", None, ("OMP_NUM_THREADS",), ("num_cpu_threads_per_process",), _int_at_least(1)),
    Option("dynamo_backend", "no", _accel("DYNAMO_BACKEND"), ("dynamo_backend",), _choice(DYNAMO_BACKENDS)),
    Option("dynamo_mode", "default", _accel("DYNAMO_MODE"), ("dynamo_mode",), _choice(DYNAMO_MODES)),
    Option("dynamo_use_fullgraph", False, _accel("DYNAMO_USE_FULLGRAPH"), ("dynamo_use_fullgraph",), _bool),
    Option("dynamo_use_dynamic", False, _accel("DYNAMO_USE_DYNAMIC"), ("dynamo_use_dynamic",), _bool),
    Option("use_fsdp", False, _accel("USE_FSDP"), ("use_fsdp",), _bool),
    Option("fsdp_version", 2, _fsdp("VERSION"), ("fsdp_version",), _int_at_least(1, 2)),
    Option("fsdp_reshard_after_forward", True, _fsdp("RESHARD_AFTER_FORWARD"), ("fsdp_reshard_after_forward",), _text),
    Option("fsdp_offload_params", False, _fsdp("OFFLOAD_PARAMS"), ("fsdp_offload_params",), _bool),
    Option("fsdp_auto_wrap_policy", None, _fsdp("AUTO_WRAP_POLICY"), ("fsdp_auto_wrap_policy",), _choice(AUTO_WRAP_POLICIES, upper=True)),
    Option("fsdp_transformer_layer_cls_to_wrap", None, _fsdp("TRANSFORMER_CLS_TO_WRAP"), ("fsdp_transformer_layer_cls_to_wrap",), _text),
    Option("fsdp_min_num_params", None, _fsdp("MIN_NUM_PARAMS"), ("fsdp_min_num_params",), _int_at_least(0)),
    Option("fsdp_state_dict_type", None, _fsdp("STATE_DICT_TYPE"), ("fsdp_state_dict_type",), _choice(STATE_DICT_TYPES, upper=True)),
    Option("fsdp_activation_checkpointing", False, _fsdp("ACTIVATION_CHECKPOINTING"), ("fsdp_activation_checkpointing",), _bool),
    Option("fsdp_cpu_ram_efficient_loading", False, _fsdp("CPU_RAM_EFFICIENT_LOADING"), ("fsdp_cpu_ram_efficient_loading",), _bool),
    Option("parallelism_config_dp_replicate_size", None, _nd("DP_REPLICATE_SIZE"), ("parallelism_config_dp_replicate_size",), _int_at_least(1)),
    Option("parallelism_config_dp_shard_size", None, _nd("DP_SHARD_SIZE"), ("parallelism_config_dp_shard_size",), _int_at_least(1)),
    Option("parallelism_config_tp_size", None, _nd("TP_SIZE"), ("parallelism_config_tp_size",), _int_at_least(1)),
    Option("parallelism_config_cp_size", None, _nd("CP_SIZE"), ("parallelism_config_cp_size",), _int_at_least(1)),
    Option("parallelism_config_cp_comm_strategy", None, _nd("CP_COMM_STRATEGY"), ("parallelism_config_cp_comm_strategy",), _choice(CP_COMM_STRATEGIES)),
    Option("parallelism_config_sp_size", None, _nd("SP_SIZE"), ("parallelism_config_sp_size",), _int_at_least(1)),
    Option("use_deepspeed", False, _accel("USE_DEEPSPEED"), ("use_deepspeed",), _bool),
    Option("zero_stage", None, _accel("DEEPSPEED_ZERO_STAGE"), ("zero_stage",), _int_at_least(0, 3)),
    Option("offload_optimizer_device", None, _accel("DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"), ("offload_optimizer_device",), _choice(OFFLOAD_DEVICES)),
    Option("offload_param_device", None, _accel("DEEPSPEED_OFFLOAD_PARAM_DEVICE"), ("offload_param_device",), _choice(OFFLOAD_DEVICES)),
    Option("deepspeed_config_file", None, _accel("DEEPSPEED_CONFIG_FILE"), ("deepspeed_config_file",), _text),
    Option("zero3_init_flag", None, _accel("DEEPSPEED_ZERO3_INIT"), ("zero3_init_flag",), _bool),
    Option("zero3_save_16bit_model", None, _accel("DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"), ("zero3_save_16bit_model",), _bool),
    Option("offload_optimizer_nvme_path", None, _accel("DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH"), ("offload_optimizer_nvme_path",), _text),
    Option("offload_param_nvme_path", None, _accel("DEEPSPEED_OFFLOAD_PARAM_NVME_PATH"), ("offload_param_nvme_path",), _text),
    Option("deepspeed_moe_layer_cls_names", None, _accel("DEEPSPEED_MOE_LAYER_CLS_NAMES"), ("deepspeed_moe_layer_cls_names",), _text),
    Option("gradient_accumulation_steps", None, _accel("GRADIENT_ACCUMULATION_STEPS"), ("gradient_accumulation_steps",), _int_at_least(1)),
    Option("gradient_clipping", None, _accel("GRADIENT_CLIPPING"), ("gradient_clipping",), _float),
)  # fmt: skip
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}

# Accelerate's ``distributed_type`` in a config file, as launcher switches.
_DISTRIBUTED_TYPES = {
    "NO": {},
    "MULTI_CPU": {"cpu": True},
    "MULTI_GPU": {"multi_gpu": True},
    "FSDP": {"use_fsdp": True},
    "DEEPSPEED": {"use_deepspeed": True},
    "XLA": {"tpu": True},
    "TPU": {"tpu": True},
}
# Nested sections of Accelerate's YAML and the prefix their keys get (Accelerate's rule).
_SECTIONS = {
    "fsdp_config": "fsdp_",
    "dynamo_config": "dynamo_",
    "deepspeed_config": "",
    "parallelism_config": "parallelism_config_",
}


MODE_SWITCHES = ("cpu", "multi_gpu", "tpu", "use_fsdp", "use_deepspeed")


def flatten_config(config: Mapping[str, Any], mode_from_flags: bool = False) -> dict[str, Any]:
    """Accelerate's YAML as flat launcher settings: sections merged, ``distributed_type`` mapped.

    ``fsdp_config: {version: 2}`` becomes ``fsdp_version``; ``dynamo_config.backend`` becomes
    ``dynamo_backend``; ``distributed_type: MULTI_CPU`` becomes ``cpu: true``. With
    ``mode_from_flags`` (the user typed ``--cpu``, ``--multi_gpu``, ``--use_fsdp``...), the
    file's ``distributed_type`` is ignored, as in Accelerate.

    Example:
        >>> flatten_config({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2}})
        {'use_fsdp': True, 'fsdp_version': 2}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in _SECTIONS and isinstance(value, Mapping):
            prefix = _SECTIONS[key]
            for inner, inner_value in value.items():
                name = inner if inner.startswith(prefix) else prefix + inner
                flat[name] = inner_value
        elif key == "distributed_type":
            if value is not None and not mode_from_flags:
                flat.update(_DISTRIBUTED_TYPES.get(str(value).upper(), {}))
        else:
            flat[key] = value
    return flat


@dataclass
class Resolved:
    """Every launcher setting and where each came from (``flag ...``, ``env ...``, ``config
    ...``, ``default``).

    Example:
        >>> r = resolve({}, {}, {})
        >>> r.values["mixed_precision"], r.sources["mixed_precision"]
        ('no', 'default')
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def from_source(self, kind: str) -> dict[str, Any]:
        """The settings whose source starts with ``kind`` (``"config"``, ``"env"``, ``"flag"``).

        Example:
            >>> resolve({}, {}, {"debug": True}).from_source("config")
            {'debug': True}
        """
        return {
            name: self.values[name]
            for name, source in self.sources.items()
            if source.split(" ", 1)[0] == kind
        }


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config: Mapping[str, Any] | None,
    extra_env: Mapping[str, tuple[Any, str]] | None = None,
) -> Resolved:
    """Pick each setting from the flags, else ``environ``, else the config, else its default.

    ``flags`` maps option names to what argparse produced (``None``: not given). ``config`` is
    the flattened config file (:func:`flatten_config`). ``extra_env`` holds values derived
    from the environment by other means (SLURM), as ``name -> (value, source)``; they rank
    with the environment. Every value is parsed and checked: a bad one raises
    :class:`SettingError` naming its source.

    Example:
        >>> r = resolve({"mixed_precision": "fp16"}, {"ACCEL_MIXED_PRECISION": "bf16"},
        ...             {"mixed_precision": "no"})
        >>> r.values["mixed_precision"], r.sources["mixed_precision"]
        ('fp16', 'flag --mixed_precision')
    """
    config = config or {}
    extra_env = extra_env or {}
    result = Resolved()
    for option in OPTIONS:
        value: Any = None
        source = "default"
        where = ""
        if flags.get(option.name) is not None:
            value, source, where = flags[option.name], f"flag --{option.name}", f"--{option.name}"
        elif option.name in extra_env:
            value, where = extra_env[option.name]
            source = f"env {where}"
        elif any(key in environ for key in option.env):
            key = next(key for key in option.env if key in environ)
            value, source, where = environ[key], f"env {key}", key
        elif any(config.get(key) is not None for key in option.config):
            key = next(key for key in option.config if config.get(key) is not None)
            value, source, where = config[key], f"config {key}", f"config key {key}"
        if source == "default":
            result.values[option.name] = option.default
        else:
            result.values[option.name] = option.parse(value, where)
        result.sources[option.name] = source
    return result
