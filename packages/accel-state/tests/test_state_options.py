"""The option table of accel.state.options: well-formed entries, one reader for the script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from accel.state.option_parsers import SettingError
from accel.state.options import OPTIONS, exported, lookup, option, read_setting

FLAGS = {None, "switch", "value", "int", "float", "choice", "choice_lower"}


def test_entries_are_well_formed() -> None:
    names = [entry.name for entry in OPTIONS]
    assert len(names) == len(set(names)), "duplicate option names"
    config_keys = [entry.config for entry in OPTIONS if entry.config]
    assert len(config_keys) == len(set(config_keys)), "duplicate config keys"
    for entry in OPTIONS:
        assert entry.flag in FLAGS, entry.name
        assert (entry.flag is None) == (entry.group is None), entry.name
        if entry.flag in ("choice", "choice_lower"):
            assert entry.choices, entry.name
        if entry.export is not None:
            assert entry.env, f"{entry.name} is exported but names no variable"
        if entry.export_if is not None:
            assert option(entry.export_if).flag == "switch", entry.name
        for name in entry.env:
            assert name.startswith(
                ("ACCEL_", "ACCELERATE_", "FSDP_", "PARALLELISM_CONFIG_", "OMP_")
            ), name
        if entry.env and entry.env[0] != "OMP_NUM_THREADS":
            assert entry.env[0].startswith("ACCEL_"), f"{entry.name}: ours is written first"
        if entry.default is not None:  # the default is a valid value (text options: its str)
            expected = str(entry.default) if entry.parse.kind == "text" else entry.default
            assert entry.parse(entry.default, "default") == expected, entry.name


def test_parsers_name_the_source_and_what_is_valid() -> None:
    with pytest.raises(
        SettingError,
        match=r"ACCEL_MIXED_PRECISION='fp32' is not valid; expected one of no, fp16, bf16, fp8",
    ):
        option("mixed_precision").parse("fp32", "ACCEL_MIXED_PRECISION")
    with pytest.raises(SettingError, match=r"config key zero_stage=7 must be between 0 and 3"):
        option("zero_stage").parse(7, "config key zero_stage")
    assert option("fsdp_state_dict_type").parse("sharded_state_dict", "x") == "SHARDED_STATE_DICT"


def test_reshard_after_forward_is_checked_where_it_is_given() -> None:
    reshard = option("fsdp_reshard_after_forward")
    assert [reshard.parse(v, "x") for v in ("FULL_SHARD", "shard_grad_op", "4", "no", 2)] == [
        True,
        False,
        4,
        False,
        2,
    ]
    for bad in ("sometimes", 1, "1.5", 2.0):
        with pytest.raises(SettingError, match=r"fsdp_reshard_after_forward.*expected true, false"):
            reshard.parse(bad, "--fsdp_reshard_after_forward")


def test_read_setting_prefers_ours_then_the_alias() -> None:
    both = {"ACCEL_DYNAMO_MODE": "max-autotune", "ACCELERATE_DYNAMO_MODE": "default"}
    assert read_setting("dynamo_mode", both) == ("max-autotune", "ACCEL_DYNAMO_MODE")
    assert read_setting("fsdp_offload_params", {"FSDP_OFFLOAD_PARAMS": "1"}) == (
        "1",
        "FSDP_OFFLOAD_PARAMS",
    )
    assert read_setting("FP8_MARGIN", {"ACCELERATE_FP8_MARGIN": "2"}) == (
        "2",
        "ACCELERATE_FP8_MARGIN",
    )
    assert read_setting("mixed_precision", {}) == (None, None)
    assert lookup(("A", "B"), {"B": ""}) == ("", "B")


def test_export_rules() -> None:
    assert exported(option("tpu"), {"tpu": False}) is None
    assert exported(option("tpu"), {"tpu": True}) == "true"
    assert exported(option("num_cpu_threads_per_process"), {}) == "1"
    assert exported(option("zero_stage"), {"zero_stage": 3}) is None
    assert exported(option("zero_stage"), {"zero_stage": 3, "use_deepspeed": True}) == "3"
    with pytest.raises(KeyError, match="no option 'nope'"):
        option("nope")


def test_the_table_imports_without_torch() -> None:
    code = "import sys, accel.state.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_value_lists_agree_with_the_enums_the_script_checks() -> None:
    from accel.state.enums import DynamoBackend, PrecisionType
    from accel.state.options import DYNAMO_BACKENDS, MIXED_PRECISIONS

    assert set(MIXED_PRECISIONS) == set(PrecisionType.list())
    # The launcher accepts exactly what the script's TorchDynamoPlugin accepts ("ipex" used to
    # pass the launcher and fail in the script; Accelerate's launcher refuses it too).
    assert tuple(b.lower() for b in DynamoBackend.list()) == DYNAMO_BACKENDS
    assert "ipex" not in DYNAMO_BACKENDS
