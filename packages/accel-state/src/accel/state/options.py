"""The option table: every setting of ``accel launch`` declared once (torch-free).

Each :class:`Option` entry holds the flag, the environment variables (``ACCEL_*`` first, then
the Accelerate spelling), the config-file key, the allowed values (through its parser), the
default and the help text. Generated from it:

* the argument parser of ``accel launch`` (:mod:`accel.launch.commands.launch`);
* the YAML validation of the table's keys (:mod:`accel.launch.config_schema`);
* the choices and wording of ``accel config``'s questions (:mod:`accel.launch.config_questions`);
* the launcher's resolution flags > environment > config > defaults (:mod:`accel.launch.settings`);
* the environment handed to the child processes (:mod:`accel.launch.protocol`);
* the script-side reader "raw value and the variable it came from" (:func:`read_setting`).

Adding an option is adding one entry to :data:`OPTIONS` (see ``docs/launch.md``, "Adding an
option").

Example:
    >>> option("mixed_precision").env
    ('ACCEL_MIXED_PRECISION', 'ACCELERATE_MIXED_PRECISION')
    >>> option("mixed_precision").choices
    ('no', 'fp16', 'bf16', 'fp8')
"""

from __future__ import annotations

from collections.abc import Mapping

from accel.state.enums import DynamoBackend
from accel.state.env import PREFIX
from accel.state.option_entry import (
    Option,
    accel_env,
    exported,
    fsdp_env,
    lookup,
    parallelism_env,
)
from accel.state.option_parsers import (
    BOOLEAN,
    GPU_IDS,
    NUMBER,
    RESHARD_AFTER_FORWARD,
    TEE,
    TEXT,
    SettingError,
    choice,
    integer,
)

__all__ = [
    "AUTO_WRAP_POLICIES",
    "CP_BACKENDS",
    "CP_COMM_STRATEGIES",
    "DYNAMO_BACKENDS",
    "DYNAMO_MODES",
    "FSDP_BACKWARD_PREFETCH",
    "FSDP_SHARDING_STRATEGIES",
    "MIXED_PRECISIONS",
    "OFFLOAD_DEVICES",
    "OPTIONS",
    "PARALLELISM_SIZES",
    "RDZV_BACKENDS",
    "SP_BACKENDS",
    "STATE_DICT_TYPES",
    "Option",
    "SettingError",
    "accel_env",
    "exported",
    "fsdp_env",
    "lookup",
    "option",
    "parallelism_env",
    "read_setting",
]

# Allowed values, named once (other modules import them from here).
MIXED_PRECISIONS = ("no", "fp16", "bf16", "fp8")
DYNAMO_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RDZV_BACKENDS = ("static", "c10d", "etcd", "etcd-v2")
OFFLOAD_DEVICES = ("none", "cpu", "nvme")
AUTO_WRAP_POLICIES = ("TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP")
STATE_DICT_TYPES = ("FULL_STATE_DICT", "SHARDED_STATE_DICT")
# Accelerate's FSDP1 names, asked by `accel config` and accepted in config files (not flags).
FSDP_SHARDING_STRATEGIES = (
    "FULL_SHARD",
    "SHARD_GRAD_OP",
    "NO_SHARD",
    "HYBRID_SHARD",
    "HYBRID_SHARD_ZERO2",
)
FSDP_BACKWARD_PREFETCH = ("BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH")
CP_COMM_STRATEGIES = ("allgather", "alltoall")
CP_BACKENDS = ("torch",)
SP_BACKENDS = ("deepspeed",)
PARALLELISM_SIZES = ("dp_replicate_size", "dp_shard_size", "tp_size", "cp_size", "sp_size")
# Exactly the backends TorchDynamoPlugin accepts (launch used to allow "ipex", which the plugin
# then refused in the training script).
DYNAMO_BACKENDS = tuple(backend.value.lower() for backend in DynamoBackend)

HARDWARE, PROCESSES, DYNAMO, FSDP, PARALLELISM, DEEPSPEED = (
    "hardware", "processes and machines", "torch.compile", "FSDP2",
    "N-D parallelism (ParallelismConfig)", "DeepSpeed",
)  # fmt: skip
OUTPUT = "worker output"

# ----------------------------------------------------------------------------------------------
# The table. Order = order of ``--help`` within each group and of "from it: ..." messages.
OPTIONS: tuple[Option, ...] = (
    # processes and machines
    Option("num_processes", None, integer(1), "processes over all machines", "int", PROCESSES,
           config="num_processes",
           question="How many processes in total (all machines)?"),
    Option("num_machines", 1, integer(1), None, "int", PROCESSES, config="num_machines",
           file_default=1,
           question="How many machines will run the job (more than 1: multi-node)?"),
    Option("machine_rank", 0, integer(0), "this machine's rank (0-based)", "int", PROCESSES,
           config="machine_rank", file_default=0),
    Option("main_process_ip", None, TEXT, "address of machine 0", "value", PROCESSES,
           config="main_process_ip", question="IP address of the machine with rank 0"),
    Option("main_process_port", None, integer(0, 65535), "port on machine 0; 0 = any free",
           "int", PROCESSES, config="main_process_port", question="Port of the main process"),
    Option("rdzv_backend", "static", choice(RDZV_BACKENDS), None, "choice", PROCESSES,
           config="rdzv_backend", file_default="static", question="Rendezvous backend?"),
    Option("same_network", False, BOOLEAN,
           "machines share a network: static master_addr rendezvous", "switch", PROCESSES,
           config="same_network", file_default=False,
           question="Are all machines on the same local network?"),
    Option("max_restarts", 0, integer(0), "restart the group N times on failure", "int",
           PROCESSES),
    Option("monitor_interval", 0.1, NUMBER, "seconds between health checks", "float",
           PROCESSES),
    Option("strategy", None, TEXT,
           "training strategy by name instead of the one the job type picks: single, ddp, "
           "fsdp, deepspeed, xla, or one a package registers (entry points accel.strategies)",
           "value", PROCESSES, env=(PREFIX + "STRATEGY",), config="strategy", export="set"),
    # worker output (accel.launch.worker_output; docs/progress.md)
    Option("log_dir", None, TEXT,
           "write each rank's stdout/stderr to DIR/rank_<N>.{stdout,stderr}.log", "value",
           OUTPUT, env=accel_env("LOG_DIR"), config="log_dir"),
    Option("tee", 0, TEE,
           "with --log_dir, also print 0 nothing (default), 1 stdout, 2 stderr, 3 both",
           "value", OUTPUT, env=accel_env("TEE"), config="tee"),
    Option("rank_prefix", False, BOOLEAN, "start every line a rank prints with [rank N]",
           "switch", OUTPUT, env=accel_env("RANK_PREFIX"), config="rank_prefix"),
    # hardware
    Option("cpu", False, BOOLEAN, "run on CPU (gloo) even if GPUs are present; with "
           "--multi_gpu, N CPU processes", "switch",
           HARDWARE, env=accel_env("USE_CPU"), config="use_cpu", file_default=False,
        export="always", question="Run on CPU only, even if a GPU is present?"),
    Option("multi_gpu", False, BOOLEAN, "one process per GPU (DDP)", "switch", HARDWARE),
    Option("tpu", False, BOOLEAN, "run on TPU through torch-xla", "switch", HARDWARE,
           env=accel_env("USE_XLA"), export="on"),
    Option("gpu_ids", "all", GPU_IDS, "GPUs to use: 'all' or e.g. 0,1", "value", HARDWARE,
           config="gpu_ids", question="Which device ids (comma-separated)?"),
    Option("mixed_precision", "no", choice(MIXED_PRECISIONS), None, "choice", HARDWARE,
           env=accel_env("MIXED_PRECISION"), config="mixed_precision", export="always",
           question="Mixed precision?"),
    Option("debug", False, BOOLEAN, "check collectives across processes (ACCEL_DEBUG_MODE)",
           "switch", PROCESSES, env=accel_env("DEBUG_MODE"), config="debug", file_default=False,
           export="always",
           question="Check that distributed operations agree across processes (slower, "
                    "avoids hangs)?"),
    Option("num_cpu_threads_per_process", None, integer(1),
           "OMP_NUM_THREADS of each process (default: inherited, else 1)", "int", HARDWARE,
           env=("OMP_NUM_THREADS",), export="always", export_default=1),
    # torch.compile
    Option("dynamo_backend", "no", choice(DYNAMO_BACKENDS), None, "choice_lower", DYNAMO,
           env=accel_env("DYNAMO_BACKEND"), config="dynamo_backend", section="dynamo_config",
           export="always", export_upper=True, question="Which backend?"),
    Option("dynamo_mode", "default", choice(DYNAMO_MODES), None, "choice", DYNAMO,
           env=accel_env("DYNAMO_MODE"), config="dynamo_mode", section="dynamo_config",
           export="always", question="Which mode?"),
    Option("dynamo_use_fullgraph", False, BOOLEAN, "compile the whole model as one graph",
           "switch", DYNAMO, env=accel_env("DYNAMO_USE_FULLGRAPH"),
           config="dynamo_use_fullgraph", section="dynamo_config", file_default=False,
        export="always",
           question="Require one full graph?"),
    Option("dynamo_use_dynamic", False, BOOLEAN, "dynamic shapes", "switch", DYNAMO,
           env=accel_env("DYNAMO_USE_DYNAMIC"), config="dynamo_use_dynamic",
           section="dynamo_config", file_default=False,
        export="always", question="Trace dynamic shapes?"),
    Option("dynamo_use_regional_compilation", False, BOOLEAN,
           "compile each repeated block once (TorchDynamoPlugin.use_regional_compilation)",
           "switch", DYNAMO, env=accel_env("DYNAMO_USE_REGIONAL_COMPILATION"),
           config="dynamo_use_regional_compilation", section="dynamo_config", file_default=False,
           export="always", question="Compile repeated blocks once?"),
    # FSDP2
    Option("use_fsdp", False, BOOLEAN, "shard the model with FSDP2", "switch", FSDP,
           env=accel_env("USE_FSDP"), export="on"),
    Option("fsdp_version", 2, integer(1, 2), "2 (accel implements FSDP2 only)", "value", FSDP,
           env=fsdp_env("VERSION"), config="fsdp_version", section="fsdp_config",
           file_default=1, export="set", export_if="use_fsdp", question="FSDP version?"),
    Option("fsdp_reshard_after_forward", True, RESHARD_AFTER_FORWARD,
           "true, false, a world size >= 2, FULL_SHARD or SHARD_GRAD_OP", "value", FSDP,
           env=fsdp_env("RESHARD_AFTER_FORWARD"), config="fsdp_reshard_after_forward",
           section="fsdp_config", export="set",
           export_if="use_fsdp", question="Reshard after forward?"),
    Option("fsdp_offload_params", False, BOOLEAN, "true/false", "value", FSDP,
           env=fsdp_env("OFFLOAD_PARAMS"), config="fsdp_offload_params", section="fsdp_config",
           file_default=False, export="set", export_if="use_fsdp",
           question="Offload parameters and gradients to CPU?"),
    Option("fsdp_auto_wrap_policy", None, choice(AUTO_WRAP_POLICIES, upper=True),
           "TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP or NO_WRAP", "value", FSDP,
           env=fsdp_env("AUTO_WRAP_POLICY"), config="fsdp_auto_wrap_policy",
           section="fsdp_config", export="set", export_if="use_fsdp",
           question="Auto-wrap policy?"),
    Option("fsdp_transformer_layer_cls_to_wrap", None, TEXT, "comma-separated class names",
           "value", FSDP, env=fsdp_env("TRANSFORMER_CLS_TO_WRAP"),
           config="fsdp_transformer_layer_cls_to_wrap", section="fsdp_config",
           file_types=(list, str), export="set", export_if="use_fsdp",
           question="Layer classes to wrap, comma-separated (empty: the model's own)"),
    Option("fsdp_min_num_params", None, integer(0), "for SIZE_BASED_WRAP", "value", FSDP,
           env=fsdp_env("MIN_NUM_PARAMS"), config="fsdp_min_num_params", section="fsdp_config",
           export="set", export_if="use_fsdp", question="Minimum parameters per wrapped module"),
    Option("fsdp_state_dict_type", None, choice(STATE_DICT_TYPES, upper=True),
           "FULL_STATE_DICT or SHARDED_STATE_DICT", "value", FSDP,
           env=fsdp_env("STATE_DICT_TYPE"), config="fsdp_state_dict_type",
           section="fsdp_config", export="set", export_if="use_fsdp",
           question="State dict type?"),
    Option("fsdp_activation_checkpointing", False, BOOLEAN, "true/false", "value", FSDP,
           env=fsdp_env("ACTIVATION_CHECKPOINTING"), config="fsdp_activation_checkpointing",
           section="fsdp_config", file_default=False, export="set", export_if="use_fsdp",
           question="Activation checkpointing?"),
    Option("fsdp_cpu_ram_efficient_loading", False, BOOLEAN, "true/false", "value", FSDP,
           env=fsdp_env("CPU_RAM_EFFICIENT_LOADING"), config="fsdp_cpu_ram_efficient_loading",
           section="fsdp_config", file_default=False, export="set", export_if="use_fsdp",
           question="Load weights on rank 0 only (CPU RAM)?"),
    # N-D parallelism: sizes multiply to num_processes (checked by the launcher)
    Option("parallelism_config_dp_replicate_size", None, integer(1),
           "ParallelismConfig.dp_replicate_size (sizes multiply to --num_processes)", "int", PARALLELISM,
           env=parallelism_env("DP_REPLICATE_SIZE"), config="parallelism_config_dp_replicate_size",
           section="parallelism_config", export="set"),
    Option("parallelism_config_dp_shard_size", None, integer(1),
           "ParallelismConfig.dp_shard_size (sizes multiply to --num_processes)", "int", PARALLELISM,
           env=parallelism_env("DP_SHARD_SIZE"), config="parallelism_config_dp_shard_size",
           section="parallelism_config", export="set"),
    Option("parallelism_config_tp_size", None, integer(1),
           "ParallelismConfig.tp_size (sizes multiply to --num_processes)", "int", PARALLELISM,
           env=parallelism_env("TP_SIZE"), config="parallelism_config_tp_size",
           section="parallelism_config", export="set"),
    Option("parallelism_config_cp_size", None, integer(1),
           "ParallelismConfig.cp_size (sizes multiply to --num_processes)", "int", PARALLELISM,
           env=parallelism_env("CP_SIZE"), config="parallelism_config_cp_size",
           section="parallelism_config", export="set"),
    Option("parallelism_config_cp_comm_strategy", None, choice(CP_COMM_STRATEGIES), None,
           "choice", PARALLELISM, env=parallelism_env("CP_COMM_STRATEGY"),
           config="parallelism_config_cp_comm_strategy", section="parallelism_config",
           export="set"),
    Option("parallelism_config_sp_size", None, integer(1),
           "ParallelismConfig.sp_size (sizes multiply to --num_processes)", "int", PARALLELISM,
           env=parallelism_env("SP_SIZE"), config="parallelism_config_sp_size",
           section="parallelism_config", export="set"),
    Option("parallelism_config_cp_backend", None, choice(CP_BACKENDS),
           "context parallelism backend: torch (ring attention)", "choice", PARALLELISM, env=parallelism_env("CP_BACKEND"), config="parallelism_config_cp_backend",
           section="parallelism_config", export="set"),
    Option("parallelism_config_sp_backend", None, choice(SP_BACKENDS),
           "sequence parallelism backend: deepspeed (ALST/Ulysses)", "choice", PARALLELISM,
           env=parallelism_env("SP_BACKEND"), config="parallelism_config_sp_backend",
           section="parallelism_config", export="set"),
    Option("parallelism_config_sp_seq_length", None, integer(1),
           "DeepSpeedSequenceParallelConfig.sp_seq_length (fixed sequence length)", "int",
           PARALLELISM, env=parallelism_env("SP_SEQ_LENGTH"),
           config="parallelism_config_sp_seq_length", section="parallelism_config", export="set"),
    Option("parallelism_config_sp_seq_length_is_variable", None, BOOLEAN,
           "DeepSpeedSequenceParallelConfig.sp_seq_length_is_variable (true/false)", "value",
           PARALLELISM, env=parallelism_env("SP_SEQ_LENGTH_IS_VARIABLE"),
           config="parallelism_config_sp_seq_length_is_variable", section="parallelism_config",
           export="set"),
    Option("parallelism_config_sp_attn_implementation", None, TEXT,
           "DeepSpeedSequenceParallelConfig.sp_attn_implementation (sdpa, flash_attention_2, ...)",
           "value", PARALLELISM, env=parallelism_env("SP_ATTN_IMPLEMENTATION"),
           config="parallelism_config_sp_attn_implementation", section="parallelism_config",
           export="set"),
    # DeepSpeed
    Option("use_deepspeed", False, BOOLEAN, "train with DeepSpeed (needs accel-deepspeed)",
           "switch", DEEPSPEED, env=accel_env("USE_DEEPSPEED"), export="on",
           question="Use DeepSpeed?"),
    Option("zero_stage", None, integer(0, 3), None, "int", DEEPSPEED,
           env=accel_env("DEEPSPEED_ZERO_STAGE"), config="zero_stage",
           section="deepspeed_config", export="set", export_if="use_deepspeed",
           question="ZeRO stage?"),
    Option("offload_optimizer_device", None, choice(OFFLOAD_DEVICES), None, "value", DEEPSPEED,
           env=accel_env("DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"), config="offload_optimizer_device",
           section="deepspeed_config", export="set", export_if="use_deepspeed",
           question="Offload optimizer states to?"),
    Option("offload_param_device", None, choice(OFFLOAD_DEVICES), None, "value", DEEPSPEED,
           env=accel_env("DEEPSPEED_OFFLOAD_PARAM_DEVICE"), config="offload_param_device",
           section="deepspeed_config", export="set", export_if="use_deepspeed",
           question="Offload parameters to?"),
    Option("zero3_init_flag", None, BOOLEAN, None, "value", DEEPSPEED,
           env=accel_env("DEEPSPEED_ZERO3_INIT"), config="zero3_init_flag",
           section="deepspeed_config", file_default=False, export="set",
           export_if="use_deepspeed", question="Build huge models with deepspeed.zero.Init?"),
    Option("zero3_save_16bit_model", None, BOOLEAN, env=accel_env("DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"),
           config="zero3_save_16bit_model", section="deepspeed_config", file_default=False,
           export="set", export_if="use_deepspeed",
           question="Save 16-bit weights with ZeRO-3?"),
    Option("offload_optimizer_nvme_path", None, TEXT,
           env=accel_env("DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH"),
           config="offload_optimizer_nvme_path", section="deepspeed_config", export="set",
           export_if="use_deepspeed", question="NVMe path for optimizer"),
    Option("offload_param_nvme_path", None, TEXT,
           env=accel_env("DEEPSPEED_OFFLOAD_PARAM_NVME_PATH"), config="offload_param_nvme_path",
           section="deepspeed_config", export="set", export_if="use_deepspeed",
           question="NVMe path for param"),
    Option("deepspeed_moe_layer_cls_names", None, TEXT,
           env=accel_env("DEEPSPEED_MOE_LAYER_CLS_NAMES"), config="deepspeed_moe_layer_cls_names",
           section="deepspeed_config", export="set", export_if="use_deepspeed"),
    Option("gradient_accumulation_steps", None, integer(1), None, "int", DEEPSPEED,
           env=accel_env("GRADIENT_ACCUMULATION_STEPS"), config="gradient_accumulation_steps",
           section="deepspeed_config", file_types=(int, str), export="set",
           question="Gradient accumulation steps?"),
    Option("gradient_clipping", None, NUMBER, None, "float", DEEPSPEED,
           env=accel_env("GRADIENT_CLIPPING"), config="gradient_clipping",
           section="deepspeed_config", file_types=(float, int, str), export="set",
           question="Clip gradients at norm"),
    Option("deepspeed_config_file", None, TEXT, None, "value", DEEPSPEED,
           env=accel_env("DEEPSPEED_CONFIG_FILE"), config="deepspeed_config_file",
           section="deepspeed_config", export="set", export_if="use_deepspeed",
           question="Path of the DeepSpeed JSON file"),
)  # fmt: skip
# The ``--help`` sections, in order.
GROUPS = (HARDWARE, PROCESSES, OUTPUT, DYNAMO, FSDP, PARALLELISM, DEEPSPEED)


def option(name: str) -> Option:
    """The table entry of setting ``name``; a ``KeyError`` lists the known names.

    Example:
        >>> option("zero_stage").env[0]
        'ACCEL_DEEPSPEED_ZERO_STAGE'
    """
    for entry in OPTIONS:  # looked up in OPTIONS itself, so an added entry is found
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in OPTIONS)
    raise KeyError(f"no option {name!r} in accel.state.options.OPTIONS; known: {known}")


def read_setting(
    name: str, environ: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """Raw value of a setting in the environment and the variable it came from.

    ``name`` is an entry of :data:`OPTIONS` (``"fsdp_state_dict_type"``) or, for settings the
    launcher does not own (``FP8_FORMAT``, ``DYNAMO_USE_REGIONAL_COMPILATION``), a protocol
    name read as ``ACCEL_<name>`` then ``ACCELERATE_<name>``. ``(None, None)`` when unset.

    Example:
        >>> read_setting("fsdp_version", {"FSDP_VERSION": "2"})
        ('2', 'FSDP_VERSION')
        >>> read_setting("FP8_FORMAT", {"ACCEL_FP8_FORMAT": "E4M3"})
        ('E4M3', 'ACCEL_FP8_FORMAT')
    """
    entry = next((entry for entry in OPTIONS if entry.name == name), None)
    keys = entry.env if entry is not None else accel_env(name)
    return lookup(keys, environ)
