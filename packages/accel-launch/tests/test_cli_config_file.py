"""accel.launch.config_file: schema validation, paths, writing."""

from __future__ import annotations

import pytest

from accel.launch.config_file import (
    SOURCE_ACCEL_DEFAULT,
    SOURCE_ACCELERATE_DEFAULT,
    SOURCE_ENV,
    SOURCE_FLAG,
    SOURCE_NONE,
    ConfigError,
    ConfigFile,
    default_config_path,
    load_config,
    resolve_config_path,
    write_config,
)

ACCELERATE_INTERACTIVE = """\
compute_environment: LOCAL_MACHINE
debug: false
distributed_type: FSDP
downcast_bf16: 'no'
enable_cpu_affinity: false
fsdp_config:
  fsdp_activation_checkpointing: false
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_cpu_ram_efficient_loading: true
  fsdp_offload_params: false
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_version: 2
gpu_ids: all
machine_rank: 0
main_training_function: main
mixed_precision: bf16
num_machines: 1
num_processes: 8
rdzv_backend: static
same_network: true
tpu_env: []
tpu_use_cluster: false
tpu_use_sudo: false
use_cpu: false
"""


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_accelerate_interactive_file_loads(tmp_path):
    cfg = load_config(_write(tmp_path, ACCELERATE_INTERACTIVE))
    assert cfg.distributed_type == "FSDP"
    assert cfg.downcast_bf16 is False  # 'no' string, as Accelerate writes it
    assert cfg.fsdp_config["fsdp_version"] == 2
    assert cfg.launch_defaults()["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert cfg.is_set("num_processes") and not cfg.is_set("main_process_ip")


def test_json_content_in_yaml_file(tmp_path):
    cfg = load_config(_write(tmp_path, '{"distributed_type": "MULTI_GPU", "num_processes": 2}'))
    assert cfg.num_processes == 2 and cfg.num_machines == 1


def test_json_file(tmp_path):
    cfg = load_config(_write(tmp_path, '{"distributed_type": "NO"}', "c.json"))
    assert cfg.num_processes == 1


def test_unknown_key_names_it_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "distributed_type: 'NO'\nnum_proceses: 2\n"))
    message = str(info.value)
    assert "num_proceses" in message and "did you mean 'num_processes'" in message
    assert "c.yaml" in message


def test_unknown_nested_key(tmp_path):
    with pytest.raises(
        ConfigError, match=r"fsdp_ofload_params.*fsdp_config.*did you mean 'fsdp_offload_params'"
    ):
        load_config(
            _write(tmp_path, "distributed_type: FSDP\nfsdp_config:\n  fsdp_ofload_params: true\n")
        )


def test_nested_key_without_prefix(tmp_path):
    cfg = load_config(_write(tmp_path, "distributed_type: FSDP\nfsdp_config:\n  version: 2\n"))
    assert cfg.launch_defaults()["fsdp_version"] == 2


def test_wrong_type_names_key_value_type(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "distributed_type: MULTI_GPU\nnum_processes: four\n"))
    message = str(info.value)
    assert "num_processes='four'" in message and "an integer" in message and "str" in message


def test_bad_choice(tmp_path):
    with pytest.raises(
        ConfigError, match=r"distributed_type='MULTI_GUP'.*did you mean 'MULTI_GPU'"
    ):
        load_config(_write(tmp_path, "distributed_type: MULTI_GUP\n"))


def test_bad_bool(tmp_path):
    with pytest.raises(ConfigError, match=r"use_cpu='maybe'.*a boolean"):
        load_config(_write(tmp_path, "distributed_type: 'NO'\nuse_cpu: maybe\n"))


def test_invalid_yaml_one_line_with_line_number(tmp_path):
    path = _write(tmp_path, "distributed_type: 'NO'\nnum_processes: [1,\nuse_cpu: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "invalid YAML" in message
    assert "\n" not in message
    line = int(message[len(str(path)) + 1 :].split(":")[0])
    assert 2 <= line <= 4


def test_missing_file_and_source(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist \(from env ACCEL_CONFIG_FILE\)"):
        load_config(tmp_path / "nope.yaml", SOURCE_ENV)


def test_empty_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        load_config(_write(tmp_path, ""))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_range_checks(tmp_path):
    with pytest.raises(ConfigError, match="machine_rank=2"):
        load_config(
            _write(tmp_path, "distributed_type: MULTI_GPU\nnum_machines: 2\nmachine_rank: 2\n")
        )
    with pytest.raises(ConfigError, match="main_process_port=70000"):
        load_config(_write(tmp_path, "distributed_type: MULTI_GPU\nmain_process_port: 70000\n"))


def test_legacy_keys_converted(tmp_path):
    cfg = load_config(
        _write(tmp_path, "distributed_type: 'NO'\nfp16: true\ndynamo_backend: INDUCTOR\n")
    )
    assert cfg.mixed_precision == "fp16"
    assert cfg.dynamo_config == {"dynamo_backend": "INDUCTOR"}
    assert "fp16" not in cfg.to_dict()


def test_sagemaker_keys(tmp_path):
    text = "compute_environment: AMAZON_SAGEMAKER\ndistributed_type: DATA_PARALLEL\nec2_instance_type: ml.p3\niam_role_name: r\n"
    assert load_config(_write(tmp_path, text)).region == "us-east-1"
    with pytest.raises(ConfigError, match="only valid with compute_environment: AMAZON_SAGEMAKER"):
        load_config(_write(tmp_path, "distributed_type: 'NO'\nregion: eu\n"))


def test_mixed_precision_case_insensitive(tmp_path):
    assert (
        load_config(
            _write(tmp_path, "distributed_type: 'NO'\nmixed_precision: BF16\n")
        ).mixed_precision
        == "bf16"
    )


def test_write_round_trip(tmp_path):
    path = write_config(
        {"distributed_type": "MULTI_GPU", "num_processes": 2, "gpu_ids": "0,1"},
        tmp_path / "a" / "c.yaml",
    )
    cfg = load_config(path)
    assert cfg.to_dict() == ConfigFile(cfg.explicit).to_dict()
    assert cfg.gpu_ids == "0,1" and cfg.num_processes == 2
    assert not list(path.parent.glob(".*"))  # no temporary file left


def test_write_rejects_bad_mapping(tmp_path):
    with pytest.raises(ConfigError):
        write_config({"distributed_type": "NO", "bogus": 1}, tmp_path / "c.yaml")
    assert not (tmp_path / "c.yaml").exists()


def test_gpu_ids_int_becomes_string(tmp_path):
    assert load_config(_write(tmp_path, "distributed_type: 'NO'\ngpu_ids: 0\n")).gpu_ids == "0"


def test_resolve_precedence(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HF_HOME": str(tmp_path / "hf")}
    assert resolve_config_path(None, env) == (None, SOURCE_NONE)
    theirs = tmp_path / "hf" / "accelerate" / "default_config.yaml"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("distributed_type: 'NO'\n")
    assert resolve_config_path(None, env) == (theirs, SOURCE_ACCELERATE_DEFAULT)
    ours = tmp_path / "xdg" / "accel" / "default_config.yaml"
    ours.parent.mkdir(parents=True)
    ours.write_text("distributed_type: 'NO'\n")
    assert resolve_config_path(None, env) == (ours, SOURCE_ACCEL_DEFAULT)
    env["ACCELERATE_CONFIG_FILE"] = str(tmp_path / "e.yaml")
    assert resolve_config_path(None, env) == (tmp_path / "e.yaml", "env ACCELERATE_CONFIG_FILE")
    env["ACCEL_CONFIG_FILE"] = str(tmp_path / "g.yaml")
    assert resolve_config_path(None, env) == (tmp_path / "g.yaml", SOURCE_ENV)
    assert resolve_config_path(str(tmp_path / "f.yaml"), env) == (tmp_path / "f.yaml", SOURCE_FLAG)


def test_default_config_path(tmp_path):
    assert (
        default_config_path({"XDG_CONFIG_HOME": str(tmp_path)})
        == tmp_path / "accel" / "default_config.yaml"
    )
    assert (
        default_config_path({"ACCEL_CONFIG_FILE": str(tmp_path / "x.yaml")}) == tmp_path / "x.yaml"
    )


def test_basic_config_gpu_and_cpu():
    from accel.launch.basic_config import basic_config

    assert basic_config("no", num_gpus=0)["use_cpu"] is True
    one = basic_config("fp16", num_gpus=1)
    assert (one["distributed_type"], one["num_processes"], one["use_cpu"]) == ("NO", 1, False)
    assert basic_config(num_gpus=8)["num_processes"] == 8
    with pytest.raises(ConfigError, match="fp64"):
        basic_config("fp64")


def test_gpu_probe_respects_visible_devices(monkeypatch):
    from accel.launch import gpu_probe

    monkeypatch.setattr(gpu_probe, "_nvidia", lambda: 4)
    assert gpu_probe.count_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2
    assert gpu_probe.count_gpus({}) == 4
    monkeypatch.setattr(gpu_probe, "_nvidia", lambda: 0)
    monkeypatch.setattr(gpu_probe, "_rocm", lambda: 0)
    assert gpu_probe.count_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == 0
