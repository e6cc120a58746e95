"""The strategy registry finds accel-deepspeed; a missing deepspeed gets one line; the
Accelerator and a DeepSpeed config agree on accumulation steps or the conflict is named."""

from __future__ import annotations

import sys

import pytest

from accel.core.strategies import strategy_for
from accel.deepspeed import DeepSpeedPlugin
from accel.deepspeed.availability import require_deepspeed
from accel.deepspeed.strategy import DeepSpeedStrategy


def test_registry_maps_deepspeed_to_this_package() -> None:
    assert strategy_for("DEEPSPEED") is DeepSpeedStrategy


def test_missing_deepspeed_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    with pytest.raises(ImportError) as error:
        require_deepspeed()
    assert str(error.value) == "DeepSpeed is not installed: pip install 'accel-core[deepspeed]'"


def test_accumulation_steps_conflict_is_named() -> None:
    from accel.core import Accelerator

    with pytest.raises(ValueError) as error:
        Accelerator(
            gradient_accumulation_steps=4,
            deepspeed_plugin=DeepSpeedPlugin(gradient_accumulation_steps=2),
        )
    message = str(error.value)
    assert "Accelerator(gradient_accumulation_steps=4)" in message
    assert "DeepSpeedPlugin(gradient_accumulation_steps=2)" in message


def test_accumulation_steps_come_from_the_config_and_precision_from_the_strategy() -> None:
    from accel.core import Accelerator

    accelerator = Accelerator(
        deepspeed_plugin=DeepSpeedPlugin(hf_ds_config={"gradient_accumulation_steps": 3})
    )
    assert accelerator.distributed_type.value == "DEEPSPEED"
    assert accelerator.gradient_accumulation_steps == 3
    assert accelerator.scaler is None and accelerator.native_amp is False


def test_a_foreign_plugin_type_is_refused() -> None:
    from accel.core import Accelerator

    class NotOurs:
        pass

    with pytest.raises(TypeError, match=r"pass accel.deepspeed.DeepSpeedPlugin"):
        Accelerator(deepspeed_plugin=NotOurs())


def test_launcher_precision_reaches_the_plugin_the_strategy_creates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from accel.core import Accelerator

    monkeypatch.setenv("ACCEL_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCEL_MIXED_PRECISION", "bf16")
    accelerator = Accelerator()
    plugin = accelerator.state.deepspeed_plugin
    assert isinstance(plugin, DeepSpeedPlugin)
    assert plugin.deepspeed_config["bf16"]["enabled"] is True
    assert accelerator.state.mixed_precision == "bf16"
