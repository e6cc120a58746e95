"""The Accelerate-named helpers of accel-state: optional packages, devices, env reading, barrier."""

from __future__ import annotations

import doctest
import importlib
import os

import pytest

import accel.state as state
from accel.state import device_availability, env_reading, optional_packages


@pytest.mark.parametrize(
    "module", ["optional_packages", "device_availability", "env_reading", "barrier", "general"]
)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"accel.state.{module}")
    result = doctest.testmod(mod, raise_on_error=False, verbose=False)
    assert result.failed == 0 and result.attempted > 0, result


def test_package_checks_follow_what_is_installed() -> None:
    assert optional_packages.is_pytest_available() is True
    assert optional_packages.is_distribution_installed("no_such_package_xyz") is False
    # A module that exists but has no distribution metadata does not count as a package.
    assert optional_packages.is_distribution_installed("os") is False
    checks = [n for n in state.__all__ if n.startswith("is_") and n.endswith("_available")]
    assert len(checks) >= 50
    for name in checks:
        if name in ("is_package_available", "is_bitsandbytes_multi_backend_available"):
            continue
        assert isinstance(getattr(state, name)(), bool), name
    # (the bitsandbytes check imports bitsandbytes: about a minute here, so it is not called)


def test_device_checks_on_a_cpu_machine() -> None:
    assert device_availability.is_hpu_available() is False
    assert device_availability.is_mlu_available(check_device=True) is False
    assert device_availability.is_habana_gaudi1() is False
    assert device_availability.is_fp16_available() is True
    assert device_availability.is_fp8_available() == (
        optional_packages.is_msamp_available()
        or optional_packages.is_transformer_engine_available()
        or optional_packages.is_torchao_available()
    )


def test_env_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_RANK_A", "-1")
    monkeypatch.setenv("T_RANK_B", "5")
    assert env_reading.get_int_from_env(["T_RANK_A", "T_RANK_B"], 0) == 5
    monkeypatch.setenv("T_RANK_A", "two")
    with pytest.raises(ValueError, match="T_RANK_A='two'"):
        env_reading.get_int_from_env(["T_RANK_A"], 0)
    monkeypatch.setenv("T_FLAG", "maybe")
    with pytest.raises(ValueError, match="T_FLAG"):
        env_reading.parse_flag_from_env("T_FLAG")
    assert env_reading.parse_flag_from_env("T_UNSET_FLAG", True) is True
    with pytest.raises(ValueError, match="A B"):
        env_reading.convert_dict_to_env_variables({"A B": "1"})


def test_purge_environment_on_a_class_and_its_subclass() -> None:
    @env_reading.purge_accelerate_environment
    class Base:
        def test_sets(self) -> None:
            os.environ["ACCELERATE_PURGE_PROBE"] = "1"

    class Child(Base):
        def test_child(self) -> None:
            os.environ["ACCEL_PURGE_PROBE"] = "1"

    Base().test_sets()
    Child().test_child()
    assert "ACCELERATE_PURGE_PROBE" not in os.environ
    assert "ACCEL_PURGE_PROBE" not in os.environ


def test_wait_for_everyone_single_process() -> None:
    assert state.wait_for_everyone() is None  # one process: returns at once
    assert state.PartialState().num_processes == 1


def test_general_helpers() -> None:
    assert state.get_current_device_type() == ("cuda", "MULTI_GPU")  # no plugin family here
    with pytest.raises(AttributeError, match=r"'path\.nope'"):
        state.recursive_getattr(os, "path.nope")
    with pytest.raises(ValueError, match="port=0"):
        state.is_port_in_use(0)
    assert state.convert_bytes(5 * 1024**5) == "5.0 PB"
