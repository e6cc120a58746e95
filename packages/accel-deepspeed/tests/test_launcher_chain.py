"""From an Accelerate-style YAML section through ``accel launch``'s resolution and environment
protocol to the ``DeepSpeedPlugin`` the script builds (no processes started)."""

from __future__ import annotations

import os

from accel.deepspeed import DeepSpeedPlugin
from accel.launch.protocol import protocol_env
from accel.launch.settings import flatten_config, resolve


def launch_env(config: dict, flags: dict | None = None) -> dict[str, str]:
    resolved = resolve(flags or {}, {}, flatten_config(config, mode_from_flags=bool(flags)))
    return protocol_env(resolved.values)


def test_yaml_deepspeed_section_reaches_the_plugin(tmp_path) -> None:
    config = {
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {
            "zero_stage": 3,
            "offload_optimizer_device": "nvme",
            "offload_optimizer_nvme_path": str(tmp_path),
            "zero3_save_16bit_model": True,
            "zero3_init_flag": True,
            "gradient_clipping": 0.5,
        },
    }
    os.environ.update(launch_env(config))
    plugin = DeepSpeedPlugin()
    zero = plugin.deepspeed_config["zero_optimization"]
    assert plugin.zero_stage == 3 and plugin.is_zero3_init_enabled()
    assert zero["offload_optimizer"] == {"device": "nvme", "nvme_path": str(tmp_path)}
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5


def test_flag_over_yaml_then_plugin_argument_conflict_is_named() -> None:
    config = {"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 3}}
    env = launch_env(config, flags={"use_deepspeed": True, "zero_stage": 1})
    assert env["ACCEL_DEEPSPEED_ZERO_STAGE"] == "1"  # the flag wins over the file, as documented
    os.environ.update(env)
    try:
        DeepSpeedPlugin(zero_stage=2)
    except ValueError as error:
        assert "DeepSpeedPlugin(zero_stage=2)" in str(error)
        assert "ACCEL_DEEPSPEED_ZERO_STAGE='1'" in str(error)
    else:
        raise AssertionError("a script/launcher conflict was accepted")
