"""The launcher protocol (accel.state.env) and the environment context managers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from accel.state import clear_environment, env, patch_environment


def test_env_names_ours_first():
    assert env.env_names("DEBUG_MODE") == ("ACCEL_DEBUG_MODE", "ACCELERATE_DEBUG_MODE")


def test_read_env_prefers_accel_over_accelerate_alias():
    both = {"ACCEL_MIXED_PRECISION": "fp16", "ACCELERATE_MIXED_PRECISION": "bf16"}
    assert env.read_env("MIXED_PRECISION", environ=both) == "fp16"
    assert env.read_env("MIXED_PRECISION", environ={"ACCELERATE_MIXED_PRECISION": "bf16"}) == (
        "bf16"
    )
    assert env.read_env("MIXED_PRECISION", "no", environ={}) == "no"
    assert env.read_env("MIXED_PRECISION", environ={}) is None


def test_read_env_defaults_to_os_environ():
    os.environ["ACCELERATE_DEBUG_MODE"] = "yes"
    assert env.read_env("DEBUG_MODE") == "yes"
    os.environ["ACCEL_DEBUG_MODE"] = "no"
    assert env.read_env("DEBUG_MODE") == "no"
    assert env.read_flag("DEBUG_MODE") is False


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", "y", "on", "t", " 1 "])
def test_read_flag_true(raw):
    assert env.read_flag("DEBUG_MODE", environ={"ACCEL_DEBUG_MODE": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "NO", "n", "off", "f", ""])
def test_read_flag_false(raw):
    assert env.read_flag("DEBUG_MODE", default=True, environ={"ACCEL_DEBUG_MODE": raw}) is False


def test_read_flag_default_when_unset():
    assert env.read_flag("DEBUG_MODE", environ={}) is False
    assert env.read_flag("DEBUG_MODE", default=True, environ={}) is True


def test_read_flag_alias_beats_default_and_accel_beats_alias():
    assert env.read_flag("USE_CPU", environ={"ACCELERATE_USE_CPU": "true"}) is True
    environ = {"ACCEL_USE_CPU": "0", "ACCELERATE_USE_CPU": "1"}
    assert env.read_flag("USE_CPU", environ=environ) is False


@pytest.mark.parametrize("key", ["ACCEL_DEBUG_MODE", "ACCELERATE_DEBUG_MODE"])
def test_read_flag_error_names_variable_value_and_valid_values(key):
    with pytest.raises(ValueError) as info:
        env.read_flag("DEBUG_MODE", environ={key: "maybe"})
    message = str(info.value)
    assert key in message
    assert "'maybe'" in message
    for valid in ("1", "true", "yes", "0", "false", "no"):
        assert valid in message


def test_str_to_bool_error_names_source():
    with pytest.raises(ValueError, match="FORK_LAUNCHED='2'"):
        env.str_to_bool("2", "FORK_LAUNCHED")


def test_read_choice_lowercases_and_checks():
    choices = ["no", "fp16", "bf16"]
    assert env.read_choice("MIXED_PRECISION", choices, "no", environ={}) == "no"
    environ = {"ACCEL_MIXED_PRECISION": "BF16"}
    assert env.read_choice("MIXED_PRECISION", choices, "no", environ=environ) == "bf16"
    environ = {"ACCELERATE_MIXED_PRECISION": "Fp16"}
    assert env.read_choice("MIXED_PRECISION", choices, "no", environ=environ) == "fp16"
    environ = {"ACCEL_MIXED_PRECISION": "no", "ACCELERATE_MIXED_PRECISION": "fp16"}
    assert env.read_choice("MIXED_PRECISION", choices, "bf16", environ=environ) == "no"


@pytest.mark.parametrize("key", ["ACCEL_MIXED_PRECISION", "ACCELERATE_MIXED_PRECISION"])
def test_read_choice_error_names_variable_value_and_choices(key):
    with pytest.raises(ValueError) as info:
        env.read_choice("MIXED_PRECISION", ["no", "fp16", "bf16"], "no", environ={key: "fp64"})
    message = str(info.value)
    assert key in message
    assert "'fp64'" in message
    assert "no, fp16, bf16" in message


def test_read_int_first_set_key_wins():
    environ = {"PMI_SIZE": "4", "WORLD_SIZE": "8"}
    assert env.read_int(["WORLD_SIZE", "PMI_SIZE"], 1, environ=environ) == 8
    assert env.read_int(["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"], 1, environ=environ) == 4
    assert env.read_int(["NOPE"], 3, environ=environ) == 3
    assert env.read_int(["NOPE"], environ=environ) is None


def test_read_int_skips_blank_and_parses_spaces_and_negatives():
    assert env.read_int(["A", "B"], 1, environ={"A": "  ", "B": "5"}) == 5
    assert env.read_int(["A"], 1, environ={"A": " 7 "}) == 7
    assert env.read_int(["A"], 1, environ={"A": "-2"}) == -2


@pytest.mark.parametrize("raw", ["two", "1.5", "0x10"])
def test_read_int_error_names_variable_value_and_expectation(raw):
    with pytest.raises(ValueError) as info:
        env.read_int(["WORLD_SIZE"], 1, environ={"WORLD_SIZE": raw})
    message = str(info.value)
    assert f"WORLD_SIZE={raw!r}" in message
    assert "integer" in message


def test_protocol_names_are_unique_and_prefixed_on_read():
    assert len(set(env.PROTOCOL_NAMES)) == len(env.PROTOCOL_NAMES)
    for name in env.PROTOCOL_NAMES:
        assert env.read_env(name, environ={f"ACCELERATE_{name}": "x"}) == "x"


def test_torch_free_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import accel.state, accel.state.env, accel.state.enums, accel.state.world\n"
        "import accel.state.backends, accel.state.environment, accel.state.kwargs\n"
        "accel.state.DistributedType, accel.state.patch_environment\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_lazy_exports_resolve_and_unknown_name_errors():
    import accel.state as pkg

    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no_such_thing"):
        pkg.no_such_thing  # noqa: B018


# patch_environment / clear_environment


def test_patch_environment_upper_cases_keys_stringifies_and_restores():
    os.environ["ACCEL_EXISTING"] = "old"
    with patch_environment(accel_existing=1, accel_new_var=2.5):
        assert os.environ["ACCEL_EXISTING"] == "1"
        assert os.environ["ACCEL_NEW_VAR"] == "2.5"
        assert "accel_new_var" not in os.environ
    assert os.environ["ACCEL_EXISTING"] == "old"
    assert "ACCEL_NEW_VAR" not in os.environ


def test_patch_environment_restores_on_exception():
    os.environ["ACCEL_EXISTING"] = "old"
    with (
        pytest.raises(RuntimeError, match="boom"),
        patch_environment(ACCEL_EXISTING="new", ACCEL_FRESH="x"),
    ):
        raise RuntimeError("boom")
    assert os.environ["ACCEL_EXISTING"] == "old"
    assert "ACCEL_FRESH" not in os.environ


def test_patch_environment_same_key_in_two_spellings_restores_original():
    os.environ["ACCEL_DUP"] = "orig"
    with patch_environment(accel_dup="a", ACCEL_DUP="b"):
        assert os.environ["ACCEL_DUP"] in ("a", "b")
    assert os.environ["ACCEL_DUP"] == "orig"


def test_patch_environment_nested():
    with patch_environment(ACCEL_A="1"):
        with patch_environment(ACCEL_A="2"):
            assert os.environ["ACCEL_A"] == "2"
        assert os.environ["ACCEL_A"] == "1"
    assert "ACCEL_A" not in os.environ


def test_clear_environment_empties_and_restores_everything():
    os.environ["ACCEL_KEEP_ME"] = "yes"
    before = dict(os.environ)
    with clear_environment():
        assert len(os.environ) == 0
        os.environ["ACCEL_INSIDE"] = "1"
    assert dict(os.environ) == before
    assert "ACCEL_INSIDE" not in os.environ


def test_clear_environment_restores_on_exception():
    os.environ["ACCEL_KEEP_ME"] = "yes"
    before = dict(os.environ)
    with pytest.raises(KeyError), clear_environment():
        os.environ["ACCEL_INSIDE"] = "1"
        raise KeyError("x")
    assert dict(os.environ) == before
