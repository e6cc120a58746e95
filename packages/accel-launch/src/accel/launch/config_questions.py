"""The questions of interactive ``accel config`` and the config mapping built from the answers.

The wording and allowed values of a question about a launcher option come from the option
table (:mod:`accel.state.options`: ``question`` and the parser's choices); this module holds
only the order of the questions and which answer leads to which.

Example:
    >>> import io
    >>> from accel.launch.questions import Asker
    >>> ask_config(Asker(io.StringIO(""), io.StringIO()), num_gpus=0)["use_cpu"]
    True
"""

from __future__ import annotations

from typing import Any

from accel.launch import config_schema as schema
from accel.launch.questions import Asker
from accel.state.options import FSDP_SHARDING_STRATEGIES, option

MACHINES = [
    ("No distributed training (one process)", "NO"),
    ("multi-CPU", "MULTI_CPU"),
    ("multi-GPU (CUDA / ROCm)", "MULTI_GPU"),
    ("multi-XPU", "MULTI_XPU"),
    ("multi-NPU", "MULTI_NPU"),
    ("multi-HPU", "MULTI_HPU"),
    ("multi-MLU", "MULTI_MLU"),
    ("multi-MUSA", "MULTI_MUSA"),
    ("multi-SDAA", "MULTI_SDAA"),
    ("multi-NEURON", "MULTI_NEURON"),
    ("TPU (torch-xla)", "XLA"),
]
_DEVICE_MULTI = {
    "MULTI_GPU",
    "MULTI_XPU",
    "MULTI_NPU",
    "MULTI_HPU",
    "MULTI_MLU",
    "MULTI_MUSA",
    "MULTI_SDAA",
}
_DYNAMO = [b for b in option("dynamo_backend").choices or () if b != "no"]


def _q(name: str) -> str:
    """The question of option ``name`` in the option table."""
    return option(name).question or name


def _choices(name: str) -> list[Any]:
    """The allowed values of option ``name`` in the option table."""
    return list(option(name).choices or ())


def _machines(ask: Asker, config: dict[str, Any]) -> None:
    machines = ask.number(_q("num_machines"), 1, 1)
    config["num_machines"] = machines
    if machines > 1:
        config["machine_rank"] = ask.number(f"Rank of this machine (0-{machines - 1})?", 0, 0)
        config["main_process_ip"] = ask.text(_q("main_process_ip"))
        config["main_process_port"] = ask.number(_q("main_process_port"), 29500, 1)
        config["same_network"] = ask.yes_no(_q("same_network"), True)
        if not config["same_network"]:
            config["rdzv_backend"] = ask.choice(
                _q("rdzv_backend"), _choices("rdzv_backend"), default=1
            )
    config["debug"] = ask.yes_no(_q("debug"), False)


def _dynamo(ask: Asker) -> dict[str, Any]:
    if not ask.yes_no("Compile the model with torch.compile (dynamo)?", False):
        return {}
    section: dict[str, Any] = {
        "dynamo_backend": ask.choice(
            _q("dynamo_backend"), _DYNAMO, _DYNAMO.index("inductor")
        ).upper()
    }
    if ask.yes_no("Change torch.compile's other defaults?", False):
        section["dynamo_mode"] = ask.choice(_q("dynamo_mode"), _choices("dynamo_mode"), 0)
        section["dynamo_use_fullgraph"] = ask.yes_no(_q("dynamo_use_fullgraph"), False)
        section["dynamo_use_dynamic"] = ask.yes_no(_q("dynamo_use_dynamic"), False)
        section["dynamo_use_regional_compilation"] = ask.yes_no(
            _q("dynamo_use_regional_compilation"), False
        )
    return section


def _deepspeed(ask: Asker) -> dict[str, Any]:
    section: dict[str, Any] = {}
    if ask.yes_no("Use a DeepSpeed JSON config file?", False):
        section["deepspeed_config_file"] = ask.text(_q("deepspeed_config_file"))
        return section
    stage = ask.choice(_q("zero_stage"), [0, 1, 2, 3], default=2)
    section["zero_stage"] = stage
    if stage >= 2:
        for what in ("optimizer", "param"):
            name = f"offload_{what}_device"
            section[name] = ask.choice(_q(name), _choices(name), 0)
        for what in ("optimizer", "param"):
            if section[f"offload_{what}_device"] == "nvme":
                name = f"offload_{what}_nvme_path"
                section[name] = ask.text(_q(name), "/nvme")
    section["gradient_accumulation_steps"] = ask.number(_q("gradient_accumulation_steps"), 1, 1)
    if ask.yes_no("Clip gradients?", False):
        section["gradient_clipping"] = ask.decimal(_q("gradient_clipping"), 1.0)
    if stage == 3:
        section["zero3_save_16bit_model"] = ask.yes_no(_q("zero3_save_16bit_model"), False)
        section["zero3_init_flag"] = ask.yes_no(_q("zero3_init_flag"), False)
    return section


def _fsdp(ask: Asker) -> dict[str, Any]:
    section: dict[str, Any] = {"fsdp_version": ask.choice(_q("fsdp_version"), [1, 2], default=1)}
    if section["fsdp_version"] == 1:
        section["fsdp_reshard_after_forward"] = ask.choice(
            "Sharding strategy?", list(FSDP_SHARDING_STRATEGIES), 0
        )
    else:
        section["fsdp_reshard_after_forward"] = ask.yes_no(_q("fsdp_reshard_after_forward"), True)
    section["fsdp_offload_params"] = ask.yes_no(_q("fsdp_offload_params"), False)
    policy = ask.choice(_q("fsdp_auto_wrap_policy"), _choices("fsdp_auto_wrap_policy"), 0)
    section["fsdp_auto_wrap_policy"] = policy
    if policy == "TRANSFORMER_BASED_WRAP":
        names = ask.text(_q("fsdp_transformer_layer_cls_to_wrap"), "")
        if names:
            section["fsdp_transformer_layer_cls_to_wrap"] = names
    elif policy == "SIZE_BASED_WRAP":
        section["fsdp_min_num_params"] = ask.number(_q("fsdp_min_num_params"), 100_000_000)
    # sharded first: the proposed answer
    states = sorted(_choices("fsdp_state_dict_type"), key=lambda v: v != "SHARDED_STATE_DICT")
    section["fsdp_state_dict_type"] = ask.choice(_q("fsdp_state_dict_type"), states, 0)
    section["fsdp_cpu_ram_efficient_loading"] = ask.yes_no(
        _q("fsdp_cpu_ram_efficient_loading"), True
    )
    section["fsdp_activation_checkpointing"] = ask.yes_no(
        _q("fsdp_activation_checkpointing"), False
    )
    return section


def ask_config(ask: Asker, num_gpus: int = 0) -> dict[str, Any]:
    """Ask the questions and return the config mapping (validated later by ``write_config``).

    Defaults follow the machine: ``num_gpus`` > 1 proposes multi-GPU, 0 proposes CPU.

    Example:
        >>> import io
        >>> answers = io.StringIO("1\\n\\n\\n\\n3\\n2\\n")  # multi-CPU, 1 machine, 3 processes, bf16
        >>> cfg = ask_config(Asker(answers, io.StringIO()), num_gpus=0)
        >>> cfg["distributed_type"], cfg["num_processes"], cfg["mixed_precision"]
        ('MULTI_CPU', 3, 'bf16')
    """
    labels = [label for label, _ in MACHINES]
    default_kind = 2 if num_gpus > 1 else 0
    kind = dict(MACHINES)[ask.choice("Which kind of machine?", labels, default_kind)]
    config: dict[str, Any] = {"compute_environment": schema.LOCAL_MACHINE, "distributed_type": kind}
    if kind != "NO" and kind != "XLA":
        _machines(ask, config)
    if kind == "NO":
        config["use_cpu"] = ask.yes_no(_q("cpu"), num_gpus == 0)
    else:
        config["use_cpu"] = kind == "MULTI_CPU"
    config["dynamo_config"] = _dynamo(ask)
    gpu_like = kind in _DEVICE_MULTI or (kind == "NO" and not config["use_cpu"])
    if gpu_like and ask.yes_no(_q("use_deepspeed"), False):
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = _deepspeed(ask)
    elif kind in _DEVICE_MULTI and ask.yes_no("Use FullyShardedDataParallel (FSDP)?", False):
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = _fsdp(ask)
    if kind == "XLA":
        config["num_processes"] = ask.number("How many TPU cores?", 8, 1)
        config["main_training_function"] = ask.text("Name of the training function", "main")
    elif kind != "NO":
        default = num_gpus if kind == "MULTI_GPU" and num_gpus > 1 else 2
        total = ask.number(_q("num_processes"), default, 1)
        config["num_processes"] = total
        if kind in _DEVICE_MULTI:
            config["gpu_ids"] = ask.text(_q("gpu_ids"), "all")
    else:
        config["num_processes"] = 1
    if kind in ("NO", "MULTI_CPU"):
        config["enable_cpu_affinity"] = False
    config["mixed_precision"] = ask.choice(_q("mixed_precision"), _choices("mixed_precision"), 0)
    if kind == "XLA" and config["mixed_precision"] == "bf16":
        config["downcast_bf16"] = ask.yes_no(
            "On TPU, keep float64 as float32 (downcast bf16)?", False
        )
    return config
