"""Accelerate's launcher entry points in accel-launch: launch_command_parser and config files."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import accel.launch as launch


@pytest.mark.parametrize("module", ["config_compat"])
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"accel.launch.{module}")
    result = doctest.testmod(mod, raise_on_error=False, verbose=False)
    assert result.failed == 0 and result.attempted > 0, result


def test_launch_command_parser_reads_accelerate_flags() -> None:
    args = launch.launch_command_parser().parse_args(
        ["--multi-gpu", "--num-processes", "2", "--mixed_precision", "bf16", "t.py", "--lr", "1"]
    )
    assert (args.num_processes, args.mixed_precision, args.multi_gpu) == (2, "bf16", True)
    assert args.training_script_args == ["--lr", "1"]
    with pytest.raises(SystemExit):
        launch.launch_command_parser().parse_args(["--num_processes", "two", "t.py"])


def test_load_config_from_file_default_and_explicit(tmp_path, monkeypatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\nmixed_precision: bf16\n")
    config = launch.load_config_from_file(str(path))
    assert config.to_dict()["mixed_precision"] == "bf16" and config.num_processes == 2
    monkeypatch.setenv("ACCEL_CONFIG_FILE", str(path))
    assert launch.load_config_from_file(None).num_processes == 2
    path.write_text("num_processes: many\n")
    with pytest.raises(ValueError, match="num_processes"):
        launch.load_config_from_file(str(path))
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        launch.load_config_from_file(str(tmp_path / "missing.yaml"))


def test_default_config_file_follows_the_environment(tmp_path) -> None:
    path = tmp_path / "env.yaml"
    code = (
        "import accel.launch as l, sys; print(l.default_config_file); print('torch' in sys.modules)"
    )
    env = {"ACCEL_CONFIG_FILE": str(path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(path), "False"]
