"""Config sections `accel launch` hands on (fp8, parallelism_config) or refuses (Megatron-LM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from accel.launch.protocol import protocol_env
from accel.launch.sections import fp8_env, refuse_unimplemented
from accel.launch.settings import SettingError, flatten_config, resolve

ACCEL = Path(sys.executable).parent / "accel"


def test_fp8_config_becomes_accel_fp8_variables():
    flat = {
        "fp8_backend": "AO",
        "fp8_format": "E4M3",
        "fp8_amax_history_length": 16,
        "fp8_override_linear_precision": [False, True, False],
        "fp8_pad_inner_dim": True,
    }
    env = protocol_env({"fp8_env": fp8_env(flat)})
    assert env["ACCEL_FP8_BACKEND"] == "AO"
    assert env["ACCEL_FP8_FORMAT"] == "E4M3"
    assert env["ACCEL_FP8_AMAX_HISTORY_LEN"] == "16"  # then refused by FP8RecipeKwargs
    assert (env["ACCEL_FP8_OVERRIDE_FPROP"], env["ACCEL_FP8_OVERRIDE_DGRAD"]) == ("false", "true")
    assert "ACCEL_FP8_PAD_INNER_DIM" not in env


@pytest.mark.parametrize(
    ("flat", "fragment"),
    [
        ({"fp8_pad_inner_dim": False}, "fp8_config.fp8_pad_inner_dim=False"),
        ({"fp8_enable_fsdp_float8_all_gather": True}, "enable_fsdp_float8_all_gather"),
        ({"fp8_override_linear_precision": [True]}, "three booleans"),
        ({"fp8_typo": 1}, "fp8_config.fp8_typo is not an fp8 setting"),
    ],
)
def test_fp8_config_refusals(flat, fragment):
    with pytest.raises(ValueError, match=fragment):
        fp8_env(flat)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"distributed_type": "MEGATRON_LM"}, "distributed_type=MEGATRON_LM"),
        ({"megatron_lm_config": {"megatron_lm_tp_degree": 2}}, "megatron_lm_tp_degree"),
    ],
)
def test_unimplemented_sections_are_refused(config, fragment):
    with pytest.raises(ValueError, match=fragment):
        refuse_unimplemented(config, "c.yaml")


def test_parallelism_section_is_handed_on_as_environment():
    flat = flatten_config(
        {"parallelism_config": {"parallelism_config_tp_size": 2, "dp_shard_size": 2}}
    )
    assert flat == {"parallelism_config_tp_size": 2, "parallelism_config_dp_shard_size": 2}
    values = resolve({}, {}, flat).values
    env = protocol_env(values)
    assert env["ACCEL_USE_PARALLELISM_CONFIG"] == "true"
    assert (
        env["ACCEL_PARALLELISM_CONFIG_TP_SIZE"],
        env["ACCEL_PARALLELISM_CONFIG_DP_SHARD_SIZE"],
    ) == ("2", "2")
    assert "ACCEL_USE_PARALLELISM_CONFIG" not in protocol_env(resolve({}, {}, {}).values)
    with pytest.raises(SettingError, match="PARALLELISM_CONFIG_CP_SIZE='0' must be at least 1"):
        resolve({}, {"PARALLELISM_CONFIG_CP_SIZE": "0"}, {})


def test_launch_exits_2_when_sizes_do_not_match_the_processes(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "distributed_type: 'NO'\nparallelism_config:\n  parallelism_config_tp_size: 2\n"
    )
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    result = subprocess.run(
        [str(ACCEL), "launch", "--config_file", str(config), str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "tp_size=2 (from config parallelism_config_tp_size) multiply to 2" in result.stderr
    assert "the job runs 1 processes (num_processes from default)" in result.stderr
    assert "ran" not in result.stdout
