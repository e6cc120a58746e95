"""The keys of the YAML config file, their types and allowed values (torch-free).

The key set is Accelerate's (``ClusterConfig``/``SageMakerConfig`` of Accelerate 1.x plus the keys
its ``accelerate config`` questionnaire writes into the nested sections), so an Accelerate file
loads unchanged. Two legacy top-level keys (``fp16``, ``dynamo_backend``) are still read and
converted, as Accelerate does.

Example:
    >>> TOP_LEVEL["num_processes"].types
    (<class 'int'>,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accel.state.enums import DistributedType, SageMakerDistributedType
from accel.state.options import FSDP_BACKWARD_PREFETCH, OPTIONS, Option

LOCAL_MACHINE = "LOCAL_MACHINE"
AMAZON_SAGEMAKER = "AMAZON_SAGEMAKER"

# Values of Accelerate's questionnaire that are not launcher options (value lists shared with
# the launcher or the script live in the option table's module, accel.state.options).
DEEPSPEED_MULTINODE_LAUNCHERS = (
    "pdsh",
    "standard",
    "openmpi",
    "mvapich",
    "mpich",
    "nossh",
    "slurm",
)

_ANY = object


@dataclass(frozen=True)
class Key:
    """One config key: accepted Python types (after YAML parsing), default, allowed values.

    ``bool`` keys also accept the truth strings Accelerate writes (``'no'``, ``'yes'``);
    ``int``/``float`` keys accept numeric strings; ``str`` keys accept numbers (``gpu_ids: 0``).

    Example:
        >>> Key((bool,), False).default
        False
    """

    types: tuple[type, ...]
    default: Any = None
    choices: tuple[str, ...] | None = None
    nullable: bool = True
    case_insensitive: bool = False
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _b(default: bool = False, doc: str = "") -> Key:
    return Key((bool,), default, doc=doc)


def _i(default: int | None = None, doc: str = "") -> Key:
    return Key((int,), default, doc=doc)


def _s(default: str | None = None, choices: tuple[str, ...] | None = None, doc: str = "") -> Key:
    return Key((str,), default, choices=choices, doc=doc)


def table_key(entry: Option) -> Key:
    """The config-file key of an option table entry: its YAML types, the default ``accel
    config`` writes, and its allowed values (any case; the launcher normalises them).

    Example:
        >>> from accel.state.options import option
        >>> table_key(option("mixed_precision")).choices
        ('no', 'fp16', 'bf16', 'fp8')
    """
    return Key(
        entry.file_types or entry.parse.yaml_types,
        entry.file_default,
        choices=entry.choices,
        case_insensitive=entry.choices is not None,
        doc=entry.help or "",
    )


def table_keys(section: str | None) -> dict[str, Key]:
    """The keys of the option table in YAML ``section`` (``None``: top level).

    Example:
        >>> sorted(table_keys("dynamo_config"))[:2]
        ['dynamo_backend', 'dynamo_mode']
    """
    return {
        entry.config: table_key(entry)
        for entry in OPTIONS
        if entry.config is not None and entry.section == section
    }


_TOP = table_keys(None)
_DICT = Key((dict,), None, doc="nested section")
_STR_LIST = Key((list, str), None, doc="list of strings")

# Keys valid whatever the compute environment.
COMMON: dict[str, Key] = {
    "compute_environment": _s(LOCAL_MACHINE, (LOCAL_MACHINE, AMAZON_SAGEMAKER)),
    "distributed_type": Key((str,), "NO", choices=tuple(DistributedType.list()), nullable=False),
    # options of the table that a SageMaker file may hold too
    **{
        name: _TOP[name]
        for name in ("mixed_precision", "use_cpu", "debug", "num_machines", "gpu_ids")
    },
    "dynamo_config": _DICT,
    "enable_cpu_affinity": _b(),
}

# Keys of a local / cluster machine (Accelerate's ClusterConfig).
CLUSTER: dict[str, Key] = {
    **COMMON,
    **_TOP,  # the option table's other top-level keys
    "main_training_function": _s("main"),
    "fp8_config": _DICT,
    "deepspeed_config": _DICT,
    "fsdp_config": _DICT,
    "parallelism_config": _DICT,
    "megatron_lm_config": _DICT,
    "mpirun_config": _DICT,
    "downcast_bf16": _b(),
    "tpu_name": _s(None),
    "tpu_zone": _s(None),
    "tpu_use_cluster": _b(),
    "tpu_use_sudo": _b(),
    "command_file": _s(None),
    "commands": _STR_LIST,
    "tpu_vm": _STR_LIST,
    "tpu_env": _STR_LIST,
}

# Keys of an Amazon SageMaker job (Accelerate's SageMakerConfig); accepted, not launched by accel.
SAGEMAKER: dict[str, Key] = {
    **COMMON,
    "distributed_type": Key(
        (str,), "NO", choices=tuple(SageMakerDistributedType.list()), nullable=False
    ),
    "ec2_instance_type": _s(None),
    "iam_role_name": _s(None),
    "image_uri": _s(None),
    "profile": _s(None),
    "region": _s("us-east-1"),
    "base_job_name": _s(None),
    "pytorch_version": _s(None),
    "transformers_version": _s(None),
    "py_version": _s(None),
    "sagemaker_inputs_file": _s(None),
    "sagemaker_metrics_file": _s(None),
    "additional_args": _DICT,
}

TOP_LEVEL: dict[str, Key] = {
    **CLUSTER,
    **SAGEMAKER,
    "distributed_type": CLUSTER["distributed_type"],
}

# Old spellings read on load and converted (``accel config update`` rewrites them).
LEGACY: dict[str, Key] = {
    "fp16": _b(doc="old form of mixed_precision: fp16"),
    "dynamo_backend": _s(None, doc="old form of dynamo_config.dynamo_backend"),
}

# Nested sections. Keys may also be written without their prefix (``fsdp_config: {version: 2}``),
# as ``accelerate launch`` adds it (see PREFIXES).
NESTED: dict[str, dict[str, Key]] = {
    # Keys of the option table first (accel.state.options), then the keys Accelerate writes
    # that the launcher does not own (accepted; refused or ignored with a reason elsewhere).
    "dynamo_config": table_keys("dynamo_config"),
    "fsdp_config": {
        **table_keys("fsdp_config"),
        "fsdp_sharding_strategy": Key((str, int), None),
        "fsdp_backward_prefetch": _s(None, FSDP_BACKWARD_PREFETCH),
        "fsdp_backward_prefetch_policy": _s(None, FSDP_BACKWARD_PREFETCH),
        "fsdp_forward_prefetch": _b(),
        "fsdp_use_orig_params": _b(),
        "fsdp_sync_module_states": _b(),
        "fsdp_activation_checkpointing_offload": _b(),
    },
    "deepspeed_config": {
        **table_keys("deepspeed_config"),
        "deepspeed_multinode_launcher": _s(None, DEEPSPEED_MULTINODE_LAUNCHERS),
        "deepspeed_hostfile": _s(None),
        "deepspeed_exclusion_filter": _s(None),
        "deepspeed_inclusion_filter": _s(None),
    },
    "fp8_config": {
        "fp8_backend": _s(None, ("AO", "TE", "MSAMP")),
        "fp8_use_autocast_during_eval": _b(),
        "fp8_margin": _i(None),
        "fp8_interval": _i(None),
        "fp8_format": _s(None, ("HYBRID", "E4M3", "E5M2")),
        "fp8_amax_history_length": _i(None),
        "fp8_amax_history_len": _i(None),
        "fp8_amax_compute_algorithm": _s(None, ("max", "most_recent")),
        "fp8_amax_compute_algo": _s(None, ("max", "most_recent")),
        "fp8_override_linear_precision": Key((list, bool), None),
        "fp8_optimization_level": _s(None, ("O1", "O2")),
        "fp8_opt_level": _s(None, ("O1", "O2")),
        "fp8_enable_fsdp_float8_all_gather": _b(),
        "fp8_pad_inner_dim": _b(),
    },
    "parallelism_config": table_keys("parallelism_config"),
    "megatron_lm_config": {
        "megatron_lm_" + name: Key((int, float, str, bool), None)
        for name in (
            "tp_degree",
            "pp_degree",
            "num_micro_batches",
            "sequence_parallelism",
            "recompute_activations",
            "recompute_granularity",
            "recompute_method",
            "recompute_num_layers",
            "use_distributed_optimizer",
            "gradient_clipping",
            "context_parallel_size",
            "expert_model_parallel_size",
            "expert_tensor_parallel_size",
            "attention_backend",
            "attention_dropout",
            "hidden_dropout",
            "attention_softmax_in_fp32",
            "calculate_per_token_loss",
            "decoder_last_pipeline_num_layers",
            "eod_mask_loss",
            "no_load_optim",
            "no_save_optim",
            "optimizer_cpu_offload",
            "overlap_cpu_optimizer_d2h_h2d",
            "use_custom_fsdp",
            "use_precision_aware_optimizer",
            "use_rotary_position_embeddings",
        )
    },
    "mpirun_config": {"mpirun_hostfile": _s(None), "mpirun_ccl": Key((int, str), None)},
    "additional_args": {},  # free-form (SageMaker estimator arguments)
}

# The prefix ``accelerate launch`` puts before a nested key that lacks it.
PREFIXES: dict[str, str] = {
    "dynamo_config": "dynamo_",
    "fsdp_config": "fsdp_",
    "fp8_config": "fp8_",
    "parallelism_config": "parallelism_config_",
    "megatron_lm_config": "megatron_lm_",
}


def keys_for(compute_environment: str) -> dict[str, Key]:
    """The top-level keys valid for ``compute_environment``.

    Example:
        >>> "num_processes" in keys_for("LOCAL_MACHINE"), "region" in keys_for("LOCAL_MACHINE")
        (True, False)
    """
    return SAGEMAKER if compute_environment == AMAZON_SAGEMAKER else CLUSTER
