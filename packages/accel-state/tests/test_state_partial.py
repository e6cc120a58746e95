"""PartialState on a single process."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch

from accel.state import DistributedType, InitProcessGroupKwargs, PartialState, reset_state
from accel.state.partial_state import _skipped


def test_single_process_attributes():
    state = PartialState(cpu=True)
    assert state.initialized is True
    assert state.num_processes == 1
    assert state.process_index == 0
    assert state.local_process_index == 0
    assert state.distributed_type == DistributedType.NO
    assert state.device == torch.device("cpu")
    assert state.is_main_process is True
    assert state.is_local_main_process is True
    assert state.is_last_process is True
    assert state.use_distributed is False
    assert state.debug is False
    assert state.mixed_precision == "no"
    assert state.backend is None
    assert state.fork_launched is False
    assert not torch.distributed.is_initialized()
    text = repr(state)
    assert "Distributed environment: NO" in text
    assert "Num processes: 1" in text
    assert "Device: cpu" in text


@pytest.mark.parametrize("variable", ["ACCEL_USE_CPU", "ACCELERATE_USE_CPU"])
def test_use_cpu_env(variable):
    os.environ[variable] = "1"
    state = PartialState()
    assert state.device == torch.device("cpu")
    assert state._cpu is True


def test_cpu_argument_forces_cpu():
    assert PartialState(cpu=True).device.type == "cpu"


def test_default_device_without_cpu_flag_is_detected():
    from accel.state import detect_device_type

    state = PartialState()
    assert state.device.type == detect_device_type()
    assert state.default_device.type == detect_device_type()


@pytest.mark.parametrize("variable", ["ACCEL_DEBUG_MODE", "ACCELERATE_DEBUG_MODE"])
def test_debug_from_env(variable):
    os.environ[variable] = "true"
    assert PartialState().debug is True


def test_debug_accel_beats_accelerate():
    os.environ["ACCEL_DEBUG_MODE"] = "0"
    os.environ["ACCELERATE_DEBUG_MODE"] = "1"
    assert PartialState().debug is False


@pytest.mark.parametrize(
    "variable, raw, expected",
    [
        ("ACCEL_MIXED_PRECISION", "fp16", "fp16"),
        ("ACCELERATE_MIXED_PRECISION", "BF16", "bf16"),
        ("ACCEL_MIXED_PRECISION", "fp8", "fp8"),
        ("ACCEL_MIXED_PRECISION", "no", "no"),
    ],
)
def test_mixed_precision_from_env(variable, raw, expected):
    os.environ[variable] = raw
    assert PartialState().mixed_precision == expected


@pytest.mark.parametrize("variable", ["ACCEL_MIXED_PRECISION", "ACCELERATE_MIXED_PRECISION"])
def test_invalid_mixed_precision_errors_and_leaves_no_state(variable):
    os.environ[variable] = "fp64"
    with pytest.raises(ValueError) as info:
        PartialState()
    message = str(info.value)
    assert variable in message and "'fp64'" in message
    assert "no, fp8, fp16, bf16" in message
    assert PartialState._shared_state == {}
    del os.environ[variable]
    state = PartialState()
    assert state.initialized and state.mixed_precision == "no"


def test_invalid_debug_flag_errors_and_leaves_no_state():
    os.environ["ACCEL_DEBUG_MODE"] = "sometimes"
    with pytest.raises(ValueError, match="ACCEL_DEBUG_MODE='sometimes'"):
        PartialState()
    assert PartialState._shared_state == {}
    os.environ["ACCEL_DEBUG_MODE"] = "1"
    assert PartialState().debug is True


def test_singleton_shares_state():
    first = PartialState()
    second = PartialState()
    assert first is not second
    assert first.__dict__ is second.__dict__
    first.some_marker = 123
    assert second.some_marker == 123


def test_later_instances_ignore_env_changes():
    first = PartialState()
    os.environ["ACCEL_DEBUG_MODE"] = "1"
    assert PartialState().debug is False
    assert first.debug is False


def test_kwargs_from_init_process_group_kwargs_are_accepted():
    kwargs = InitProcessGroupKwargs(timeout=timedelta(seconds=30), backend="gloo").to_kwargs()
    state = PartialState(**kwargs)
    assert state.num_processes == 1
    assert state.backend is None  # single process: no group started


def test_unexpected_kwarg_type_error():
    with pytest.raises(TypeError) as info:
        PartialState(foo=1, bar=2)
    message = str(info.value)
    assert "'bar'" in message and "'foo'" in message
    assert "backend" in message and "timeout" in message
    assert PartialState._shared_state == {}
    assert PartialState().initialized


@pytest.mark.parametrize("variable", ["ACCEL_TORCH_DEVICE", "ACCELERATE_TORCH_DEVICE"])
def test_torch_device_env(variable):
    os.environ[variable] = "cpu"
    assert PartialState().device == torch.device("cpu")


def test_torch_device_env_wins_and_keeps_index():
    os.environ["ACCEL_TORCH_DEVICE"] = "meta"
    assert PartialState(cpu=True).device == torch.device("meta")


@pytest.mark.parametrize("variable", ["ACCEL_TORCH_DEVICE", "ACCELERATE_TORCH_DEVICE"])
def test_bad_torch_device_env_errors_clearly_and_leaves_no_state(variable):
    os.environ[variable] = "bogus:0"
    with pytest.raises(ValueError) as info:
        PartialState()
    message = str(info.value)
    assert variable in message
    assert "'bogus:0'" in message
    assert "cpu" in message and "cuda" in message
    assert PartialState._shared_state == {}
    os.environ[variable] = "cpu"
    assert PartialState().device == torch.device("cpu")


def test_bad_fork_launched_errors():
    os.environ["FORK_LAUNCHED"] = "perhaps"
    with pytest.raises(ValueError, match="FORK_LAUNCHED='perhaps'"):
        PartialState()


def test_fork_launched_env():
    os.environ["FORK_LAUNCHED"] = "1"
    state = PartialState()
    assert state.fork_launched is True
    state.destroy_process_group()  # no-op, no group


# decorators


def test_decorators_run_on_single_process_and_keep_name():
    state = PartialState()

    def work(x, *, y=1):
        """Docstring kept."""
        return x + y

    for decorator in (
        state.on_main_process,
        state.on_local_main_process,
        state.on_last_process,
        state.on_process(process_index=0),
        state.on_local_process(local_process_index=0),
    ):
        wrapped = decorator(work)
        assert wrapped(1, y=2) == 3
        assert wrapped.__name__ == "work"
        assert wrapped.__doc__ == "Docstring kept."


def test_decorators_with_empty_call_form():
    state = PartialState()

    @state.on_main_process()
    def main():
        return "main"

    @state.on_local_main_process()
    def local():
        return "local"

    assert main() == "main"
    assert local() == "local"


def test_on_process_other_index_still_runs_on_single_process():
    # Accelerate's behaviour: without distribution every decorated function runs.
    state = PartialState()
    assert state.on_process(lambda: "ran", process_index=3)() == "ran"
    assert state.on_local_process(lambda: "ran", local_process_index=2)() == "ran"


@pytest.mark.parametrize("index", [-1, -5])
def test_on_process_negative_index_errors(index):
    state = PartialState()
    with pytest.raises(ValueError, match=f"process_index={index} is out of range"):
        state.on_process(process_index=index)
    with pytest.raises(ValueError, match=f"local_process_index={index} is out of range"):
        state.on_local_process(local_process_index=index)


@pytest.mark.parametrize("index", ["0", 1.0, True, None])
def test_on_process_non_int_index_errors(index):
    state = PartialState()
    with pytest.raises(TypeError, match=rf"process_index={index!r} must be an int"):
        state.on_process(process_index=index)
    with pytest.raises(TypeError, match="local_process_index"):
        state.on_local_process(local_process_index=index)


def _pretend_rank(state, rank, size=2, local_size=None):
    """Make the shared state describe process ``rank`` of ``size`` (no process group needed
    for the decorators and ``print``, which only read these attributes)."""
    state.process_index = rank
    state.local_process_index = rank if local_size is None else rank % local_size
    state.num_processes = size
    state.distributed_type = DistributedType.MULTI_CPU


def test_decorators_skip_on_other_ranks_and_keep_name():
    state = PartialState()
    _pretend_rank(state, 1, size=3)

    def work():
        """Doc."""
        return "ran"

    skipped = state.on_main_process(work)
    assert skipped() is None
    assert skipped.__name__ == "work" and skipped.__doc__ == "Doc."
    assert state.on_local_main_process(work)() is None
    assert state.on_last_process(work)() is None
    assert state.on_process(work, process_index=1)() == "ran"
    assert state.on_process(work, process_index=2)() is None
    assert state.on_process(process_index=1)(work)() == "ran"
    with pytest.raises(ValueError, match=r"valid values are 0\.\.2"):
        state.on_process(work, process_index=3)
    _pretend_rank(state, 2, size=3)
    assert state.on_last_process(work)() == "ran"


def test_skipped_helper_returns_none_and_wraps():
    def named(a):
        return a

    wrapped = _skipped(named)
    assert wrapped(5) is None
    assert wrapped.__name__ == "named"
    assert wrapped.__wrapped__ is named


def test_megatron_main_process_is_last():
    state = PartialState()
    _pretend_rank(state, 1, size=2)
    state.distributed_type = DistributedType.MEGATRON_LM
    assert state.is_main_process is True
    assert state.is_local_main_process is True


# print, main_process_first, wait_for_everyone, split


def test_print_only_on_local_main(capsys):
    state = PartialState()
    state.print("hello", 1, sep="-")
    assert capsys.readouterr().out == "hello-1\n"
    _pretend_rank(state, 1)
    state.print("hidden")
    assert capsys.readouterr().out == ""


def test_main_process_first_runs_block():
    state = PartialState()
    ran = []
    with state.main_process_first():
        ran.append("main")
    with state.local_main_process_first():
        ran.append("local")
    assert ran == ["main", "local"]


def test_main_process_first_propagates_errors():
    state = PartialState()
    with pytest.raises(RuntimeError, match="inside"), state.main_process_first():
        raise RuntimeError("inside")
    state.wait_for_everyone()  # still usable


def test_split_between_processes_single_process_returns_input():
    state = PartialState()
    data = ["A", "B", "C"]
    with state.split_between_processes(data) as share:
        assert share is data
    with state.split_between_processes(data, apply_padding=True) as share:
        assert share == ["A", "B", "C"]


def test_split_between_processes_uses_process_index():
    state = PartialState()
    _pretend_rank(state, 1)
    with state.split_between_processes(["A", "B", "C"]) as share:
        assert share == ["C"]
    with state.split_between_processes(["A", "B", "C"], apply_padding=True) as share:
        assert share == ["C", "C"]


def test_destroy_process_group_without_group_is_noop():
    state = PartialState()
    assert not torch.distributed.is_initialized()
    assert state.destroy_process_group() is None
    assert not torch.distributed.is_initialized()
    assert state.initialized and state.num_processes == 1


# reset


def test_reset_then_attribute_access_is_a_clear_error():
    state = PartialState()
    assert state.num_processes == 1
    reset_state()
    assert state.initialized is False
    assert PartialState._shared_state == {}
    with pytest.raises(AttributeError, match="reset") as info:
        state.num_processes  # noqa: B018
    assert str(info.value).startswith("`PartialState` object has no attribute `num_processes`")
    assert "This happens if `PartialState._reset_state()`" in str(info.value)
    with pytest.raises(AttributeError, match="reset"):
        state.is_main_process  # noqa: B018


def test_reset_then_new_instance_reads_env_again():
    assert PartialState().debug is False
    reset_state()
    os.environ["ACCEL_DEBUG_MODE"] = "1"
    assert PartialState().debug is True


def test_partial_state_reset_classmethod():
    PartialState()
    PartialState._reset_state()
    assert PartialState._shared_state == {}


def test_unknown_attribute_on_live_state():
    with pytest.raises(AttributeError, match="'PartialState' object has no attribute 'nope'"):
        PartialState().nope  # noqa: B018


def test_dunder_lookup_does_not_use_reset_message():
    state = PartialState()
    reset_state()
    assert not hasattr(state, "__array__")
    with pytest.raises(AttributeError) as info:
        state.__custom_dunder__  # noqa: B018
    assert "reset" not in str(info.value)
