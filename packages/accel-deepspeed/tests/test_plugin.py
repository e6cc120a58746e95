"""DeepSpeedPlugin: fields, the launcher's environment, JSON configs, and their conflicts."""

from __future__ import annotations

import json
import os

import pytest

from accel.deepspeed import DeepSpeedPlugin


def test_default_plugin_is_zero2_with_auto_batch_values() -> None:
    plugin = DeepSpeedPlugin()
    config = plugin.deepspeed_config
    assert plugin.zero_stage == 2 and config["zero_optimization"] == {"stage": 2}
    assert config["train_micro_batch_size_per_gpu"] == "auto"
    assert config["gradient_accumulation_steps"] == "auto"
    assert "gradient_clipping" not in config
    assert "default" in plugin.sources["zero_stage"]


def test_fields_write_the_config() -> None:
    plugin = DeepSpeedPlugin(
        zero_stage=3,
        gradient_clipping=0.5,
        gradient_accumulation_steps=4,
        offload_optimizer_device="cpu",
        offload_param_device="cpu",
        zero3_save_16bit_model=True,
    )
    config = plugin.deepspeed_config
    assert config["gradient_clipping"] == 0.5 and config["gradient_accumulation_steps"] == 4
    assert config["zero_optimization"] == {
        "stage": 3,
        "offload_optimizer": {"device": "cpu"},
        "offload_param": {"device": "cpu"},
        "stage3_gather_16bit_weights_on_model_save": True,
    }
    assert plugin.hf_ds_config.is_zero3() and plugin.hf_ds_config.is_offload()


def test_launcher_environment_fills_unset_fields() -> None:
    os.environ["ACCEL_DEEPSPEED_ZERO_STAGE"] = "3"
    os.environ["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] = "cpu"
    os.environ["ACCEL_GRADIENT_CLIPPING"] = "2.0"
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 3
    assert plugin.sources["zero_stage"] == "ACCEL_DEEPSPEED_ZERO_STAGE='3'"
    assert plugin.offload_optimizer_device == "cpu"
    assert plugin.deepspeed_config["gradient_clipping"] == 2.0


def test_script_and_launcher_disagreeing_is_refused_with_both_values() -> None:
    os.environ["ACCEL_DEEPSPEED_ZERO_STAGE"] = "2"
    with pytest.raises(ValueError) as error:
        DeepSpeedPlugin(zero_stage=3)
    assert "DeepSpeedPlugin(zero_stage=3)" in str(error.value)
    assert "ACCEL_DEEPSPEED_ZERO_STAGE='2'" in str(error.value)


def test_script_and_launcher_agreeing_is_accepted() -> None:
    os.environ["ACCEL_DEEPSPEED_ZERO_STAGE"] = "3"
    assert DeepSpeedPlugin(zero_stage=3).zero_stage == 3


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ACCEL_DEEPSPEED_ZERO_STAGE", "4", "0, 1, 2 or 3"),
        ("ACCEL_DEEPSPEED_ZERO_STAGE", "two", "an integer"),
        ("ACCEL_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "gpu", "none or cpu or nvme"),
        ("ACCEL_DEEPSPEED_ZERO3_INIT", "maybe", "not a truth value"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, value: str, expected: str) -> None:
    os.environ[name] = value
    with pytest.raises(ValueError) as error:
        DeepSpeedPlugin()
    assert name in str(error.value) and repr(value) in str(error.value)
    assert expected in str(error.value)


def test_nvme_offload_needs_a_path() -> None:
    with pytest.raises(ValueError, match=r"offload_optimizer_nvme_path"):
        DeepSpeedPlugin(offload_optimizer_device="nvme")


def test_param_offload_and_zero3_init_need_stage_3() -> None:
    with pytest.raises(ValueError, match=r"needs ZeRO stage 3"):
        DeepSpeedPlugin(zero_stage=2, offload_param_device="cpu")
    with pytest.raises(ValueError, match=r"zero3_init_flag=True .* needs ZeRO stage 3"):
        DeepSpeedPlugin(zero_stage=2, zero3_init_flag=True)


def test_config_auto_values_take_the_fields() -> None:
    config = {"gradient_clipping": "auto", "zero_optimization": {"stage": "auto"}}
    plugin = DeepSpeedPlugin(hf_ds_config=config, gradient_clipping=0.7, zero_stage=1)
    assert plugin.deepspeed_config["gradient_clipping"] == 0.7
    assert plugin.zero_stage == 1
    assert config["gradient_clipping"] == "auto"  # the caller's dict is not changed


def test_config_and_field_disagreeing_is_refused_with_both_values() -> None:
    with pytest.raises(ValueError) as error:
        DeepSpeedPlugin(hf_ds_config={"zero_optimization": {"stage": 3}}, zero_stage=2)
    message = str(error.value)
    assert "zero_optimization.stage: 3 in hf_ds_config" in message
    assert "2 from DeepSpeedPlugin(zero_stage=2)" in message


def test_config_file_and_launcher_disagreeing_names_the_file_and_variable(tmp_path) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"gradient_accumulation_steps": 4}))
    os.environ["ACCEL_DEEPSPEED_CONFIG_FILE"] = str(path)
    os.environ["ACCEL_GRADIENT_ACCUMULATION_STEPS"] = "2"
    with pytest.raises(ValueError) as error:
        DeepSpeedPlugin()
    message = str(error.value)
    assert str(path) in message and "ACCEL_DEEPSPEED_CONFIG_FILE" in message
    assert "ACCEL_GRADIENT_ACCUMULATION_STEPS='2'" in message


def test_config_file_from_the_launcher_is_read(tmp_path) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "gradient_clipping": 1.5}))
    os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"] = str(path)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 3 and plugin.gradient_clipping == 1.5
    assert str(path) in plugin.sources["zero_stage"]


def test_missing_and_broken_config_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.json"):
        DeepSpeedPlugin(hf_ds_config=str(tmp_path / "nowhere.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json.*not valid JSON"):
        DeepSpeedPlugin(hf_ds_config=str(broken))
    with pytest.raises(ValueError, match=r"zero_optimization.stage=5"):
        DeepSpeedPlugin(hf_ds_config={"zero_optimization": {"stage": 5}})


def test_mixed_precision_fills_auto_and_adds_sections() -> None:
    plugin = DeepSpeedPlugin(
        hf_ds_config={"fp16": {"enabled": "auto"}, "bf16": {"enabled": "auto"}}
    )
    plugin.set_mixed_precision("bf16")
    assert plugin.deepspeed_config["bf16"] == {"enabled": True}
    assert plugin.deepspeed_config["fp16"] == {"enabled": False}
    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision("fp16")
    assert plugin.deepspeed_config["fp16"] == {"enabled": True}
    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision("no")
    assert "fp16" not in plugin.deepspeed_config and "bf16" not in plugin.deepspeed_config


def test_mixed_precision_conflicting_with_the_config_is_refused() -> None:
    plugin = DeepSpeedPlugin(hf_ds_config={"fp16": {"enabled": True}})
    with pytest.raises(
        ValueError, match=r"mixed_precision='bf16' conflicts with fp16.enabled=true"
    ):
        plugin.set_mixed_precision("bf16")
    plugin = DeepSpeedPlugin(hf_ds_config={"bf16": {"enabled": False}})
    with pytest.raises(ValueError, match=r"bf16.enabled=false"):
        plugin.set_mixed_precision("bf16")


def test_accelerate_style_fill_methods() -> None:
    plugin = DeepSpeedPlugin(hf_ds_config={"train_micro_batch_size_per_gpu": "auto", "a": {"b": 1}})
    plugin.fill_match("train_micro_batch_size_per_gpu", train_micro_batch_size_per_gpu=4)
    assert plugin.get_value("train_micro_batch_size_per_gpu") == 4
    mismatches: list[str] = []
    plugin.fill_match("a.b", mismatches, b=2)
    assert len(mismatches) == 1 and "a.b: 1" in mismatches[0]
    assert plugin.is_auto("train_micro_batch_size_per_gpu") is False


def test_selecting_a_plugin_directly_points_to_the_state() -> None:
    with pytest.raises(ValueError, match=r"select_deepspeed_plugin"):
        DeepSpeedPlugin().select()


def test_msamp_is_refused() -> None:
    with pytest.raises(ValueError, match=r"MS-AMP"):
        DeepSpeedPlugin(enable_msamp=True)
