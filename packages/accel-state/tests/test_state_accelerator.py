"""AcceleratorState on a single process, and reset_state()."""

from __future__ import annotations

import os

import pytest
import torch

from accel.state import (
    AcceleratorState,
    DistributedType,
    GradientState,
    PartialState,
    reset_state,
)


class FakeDeepSpeedPlugin:
    """What AcceleratorState uses of a DeepSpeedPlugin."""

    def __init__(self, config):
        self.deepspeed_config = config
        self.selected = False
        self.precision_calls = []
        self.select_calls = 0

    def set_mixed_precision(self, precision):
        self.precision_calls.append(precision)

    def select(self, _from_accelerator_state=False):
        assert _from_accelerator_state is True
        self.select_calls += 1
        self.selected = True


def test_requires_accelerator_on_first_creation():
    with pytest.raises(ValueError) as info:
        AcceleratorState()
    assert "Accelerator()" in str(info.value)
    assert AcceleratorState._shared_state == {}


def test_later_instances_need_no_flag():
    AcceleratorState(_from_accelerator=True)
    state = AcceleratorState()
    assert state.initialized is True
    assert state.mixed_precision == "no"


def test_attributes_delegate_to_partial_state():
    state = AcceleratorState(cpu=True, _from_accelerator=True)
    partial = PartialState()
    assert state.initialized is True
    for name in (
        "num_processes",
        "process_index",
        "local_process_index",
        "device",
        "is_main_process",
        "is_local_main_process",
        "is_last_process",
        "debug",
        "backend",
    ):
        assert getattr(state, name) == getattr(partial, name), name
    assert state.device == torch.device("cpu")
    assert state.distributed_type == DistributedType.NO
    assert state.use_distributed is False
    assert state.fork_launched is False
    assert state.is_fsdp2 is False
    assert state.deepspeed_plugin is None
    assert state.fsdp_plugin is None
    assert "Mixed precision type: no" in repr(state)
    assert "Num processes: 1" in repr(state)


def test_process_control_methods_on_single_process(capsys):
    state = AcceleratorState(_from_accelerator=True)
    state.wait_for_everyone()
    with state.split_between_processes([1, 2, 3]) as share:
        assert share == [1, 2, 3]
    order = []
    with state.main_process_first():
        order.append(1)
    with state.local_main_process_first():
        order.append(2)
    assert order == [1, 2]
    state.print("hi")
    assert capsys.readouterr().out == "hi\n"
    state.destroy_process_group()


@pytest.mark.parametrize("given, expected", [("fp16", "fp16"), ("BF16", "bf16"), ("no", "no")])
def test_mixed_precision_from_argument(given, expected):
    assert AcceleratorState(mixed_precision=given, _from_accelerator=True).mixed_precision == (
        expected
    )


@pytest.mark.parametrize("variable", ["ACCEL_MIXED_PRECISION", "ACCELERATE_MIXED_PRECISION"])
def test_mixed_precision_from_env(variable):
    os.environ[variable] = "bf16"
    assert AcceleratorState(_from_accelerator=True).mixed_precision == "bf16"


def test_mixed_precision_argument_beats_env():
    os.environ["ACCEL_MIXED_PRECISION"] = "bf16"
    assert AcceleratorState(mixed_precision="fp16", _from_accelerator=True).mixed_precision == (
        "fp16"
    )


def test_invalid_mixed_precision_argument():
    with pytest.raises(ValueError) as info:
        AcceleratorState(mixed_precision="fp64", _from_accelerator=True)
    message = str(info.value)
    assert "mixed_precision='fp64'" in message
    assert "no, fp8, fp16, bf16" in message
    assert AcceleratorState._shared_state == {}


def test_changing_mixed_precision_later_errors():
    AcceleratorState(mixed_precision="fp16", _from_accelerator=True)
    assert AcceleratorState(mixed_precision="fp16").mixed_precision == "fp16"
    assert AcceleratorState(mixed_precision="FP16").mixed_precision == "fp16"
    assert AcceleratorState().mixed_precision == "fp16"
    with pytest.raises(ValueError) as info:
        AcceleratorState(mixed_precision="bf16")
    message = str(info.value)
    assert "'bf16'" in message and "'fp16'" in message
    assert "reset_state" in message
    assert AcceleratorState().mixed_precision == "fp16"


@pytest.mark.parametrize("how", ["argument", "env"])
def test_fsdp_on_single_process_keeps_no(how):
    plugin = object()
    if how == "env":
        os.environ["ACCELERATE_USE_FSDP"] = "true"
        plugin = None
    state = AcceleratorState(fsdp_plugin=plugin, _from_accelerator=True)
    assert state.distributed_type == DistributedType.NO
    assert PartialState().distributed_type == DistributedType.NO
    assert state.fsdp_plugin is None
    assert state.is_fsdp2 is False


def test_single_deepspeed_plugin():
    plugin = FakeDeepSpeedPlugin({"bf16": {"enabled": True}})
    state = AcceleratorState(
        mixed_precision="bf16", deepspeed_plugin=plugin, _from_accelerator=True
    )
    assert state.distributed_type == DistributedType.DEEPSPEED
    assert PartialState().distributed_type == DistributedType.DEEPSPEED
    assert state.deepspeed_plugin is plugin
    assert plugin.precision_calls == ["bf16"]
    assert state.mixed_precision == "bf16"
    # under DeepSpeed the config decides; a different argument later is not an error
    assert AcceleratorState(mixed_precision="fp16").mixed_precision == "bf16"
    with pytest.raises(ValueError, match="known: none"):
        state.get_deepspeed_plugin("default")


def test_deepspeed_plugin_dict_selection():
    teacher = FakeDeepSpeedPlugin({"fp16": {"enabled": True}})
    student = FakeDeepSpeedPlugin({"bf16": {"enabled": True}})
    state = AcceleratorState(
        deepspeed_plugin={"teacher": teacher, "student": student}, _from_accelerator=True
    )
    assert state.distributed_type == DistributedType.DEEPSPEED
    assert teacher.precision_calls == ["no"] and student.precision_calls == ["no"]
    # the first plugin is active
    assert state.deepspeed_plugin is teacher
    assert (teacher.selected, student.selected) == (True, False)
    assert state.mixed_precision == "fp16"
    assert state.get_deepspeed_plugin("student") is student

    state.select_deepspeed_plugin("student")
    assert (teacher.selected, student.selected) == (False, True)
    assert student.select_calls == 1
    assert state.deepspeed_plugin is student
    assert AcceleratorState().deepspeed_plugin is student
    assert state.mixed_precision == "bf16"

    state.select_deepspeed_plugin("teacher")
    assert state.deepspeed_plugin is teacher


def test_get_deepspeed_plugin_unknown_name_lists_known():
    state = AcceleratorState(
        deepspeed_plugin={"a": FakeDeepSpeedPlugin({}), "b": FakeDeepSpeedPlugin({})},
        _from_accelerator=True,
    )
    with pytest.raises(ValueError) as info:
        state.get_deepspeed_plugin("zzz")
    message = str(info.value)
    assert "'zzz'" in message and "'a'" in message and "'b'" in message
    with pytest.raises(ValueError, match="'zzz'"):
        state.select_deepspeed_plugin("zzz")
    assert state.deepspeed_plugin is state.get_deepspeed_plugin("a")


def test_deepspeed_without_enabled_precision_is_no():
    plugin = FakeDeepSpeedPlugin({"fp16": {"enabled": False}, "zero_optimization": {}})
    state = AcceleratorState(
        mixed_precision="fp16", deepspeed_plugin=plugin, _from_accelerator=True
    )
    assert state.mixed_precision == "no"


def test_deepspeed_fp8_is_kept():
    plugin = FakeDeepSpeedPlugin({"bf16": {"enabled": True}})
    state = AcceleratorState(mixed_precision="fp8", deepspeed_plugin=plugin, _from_accelerator=True)
    assert state.mixed_precision == "fp8"


def test_use_deepspeed_env_without_plugin():
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    state = AcceleratorState(_from_accelerator=True)
    assert state.distributed_type == DistributedType.DEEPSPEED
    assert state.deepspeed_plugin is None
    assert state.mixed_precision == "no"


def test_failing_plugin_leaves_no_half_initialised_state():
    class Broken(FakeDeepSpeedPlugin):
        def set_mixed_precision(self, precision):
            raise RuntimeError("bad plugin")

    with pytest.raises(RuntimeError, match="bad plugin"):
        AcceleratorState(deepspeed_plugin=Broken({}), _from_accelerator=True)
    assert AcceleratorState._shared_state == {}
    assert PartialState().distributed_type == DistributedType.NO
    state = AcceleratorState(_from_accelerator=True)
    assert state.distributed_type == DistributedType.NO


def test_accelerator_state_shares_state():
    first = AcceleratorState(_from_accelerator=True)
    second = AcceleratorState()
    assert first.__dict__ is second.__dict__


def test_reset_state_classmethod():
    state = AcceleratorState(mixed_precision="fp16", _from_accelerator=True)
    AcceleratorState._reset_state()
    assert AcceleratorState._shared_state == {}
    assert PartialState._shared_state != {}
    expected = r"^`AcceleratorState` object has no attribute `{}`\. This happens if `AcceleratorState\._reset_state\(\)`"
    with pytest.raises(AttributeError, match=expected.format("mixed_precision")):
        state.mixed_precision  # noqa: B018
    with pytest.raises(AttributeError, match=expected.format("num_processes")):
        state.num_processes  # noqa: B018
    AcceleratorState(mixed_precision="bf16", _from_accelerator=True)
    AcceleratorState._reset_state(reset_partial_state=True)
    assert AcceleratorState._shared_state == {}
    assert PartialState._shared_state == {}
    with pytest.raises(ValueError, match="Accelerator"):
        AcceleratorState()


def test_missing_precision_shares_given_precision_must_match():
    AcceleratorState(mixed_precision="bf16", _from_accelerator=True)
    assert AcceleratorState().mixed_precision == "bf16"
    assert AcceleratorState(mixed_precision="BF16", cpu=True).mixed_precision == "bf16"
    with pytest.raises(ValueError, match=r"mixed_precision='no'\) conflicts with 'bf16'"):
        AcceleratorState(mixed_precision="no")


def test_reset_state_clears_all_three():
    AcceleratorState(mixed_precision="fp16", _from_accelerator=True)
    GradientState()._set_sync_gradients(False)
    assert PartialState._shared_state and AcceleratorState._shared_state
    assert GradientState._shared_state
    reset_state()
    assert PartialState._shared_state == {}
    assert AcceleratorState._shared_state == {}
    assert GradientState._shared_state == {}
    assert GradientState().sync_gradients is True


def test_reset_state_destroy_process_group_without_group():
    PartialState()
    reset_state(destroy_process_group=True)
    assert PartialState._shared_state == {}
    reset_state(destroy_process_group=True)  # nothing set up: still fine


def test_no_leak_a_sets_state():
    os.environ["ACCEL_DEBUG_MODE"] = "1"
    AcceleratorState(mixed_precision="bf16", _from_accelerator=True)
    GradientState()._set_sync_gradients(False)
    # what test_no_leak_b must not see
    assert PartialState().debug is True
    assert AcceleratorState().mixed_precision == "bf16"
    assert GradientState().sync_gradients is False


def test_no_leak_b_sees_fresh_state():
    assert "ACCEL_DEBUG_MODE" not in os.environ
    assert PartialState._shared_state == {}
    assert AcceleratorState._shared_state == {}
    assert GradientState._shared_state == {}
    assert PartialState().debug is False
