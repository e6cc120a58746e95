"""The ``accel`` command itself: help, dispatch, errors, no torch import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from launch_cli_helpers import accel

from accel.launch import cli
from accel.launch.parser import AccelArgumentParser, closest_flag


def _modules_after(args: list[str], tmp_path) -> set[str]:
    """Modules imported by ``accel <args>`` run in-process in a fresh interpreter."""
    code = (
        "import sys, io, contextlib\n"
        "from accel.launch.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    main({args!r})\n"
        "print('\\n'.join(sys.modules))\n"
    )
    from launch_cli_helpers import clean_env

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["env", "--help"],
        ["config", "--help"],
        ["config", "default", "--config_file", "CFG"],
        ["config", "update", "--config_file", "CFG"],
        ["config", "--config_file", "CFG2"],
    ],
)
def test_no_torch_import(args, tmp_path):
    args = [
        a.replace("CFG2", str(tmp_path / "q.yaml")).replace("CFG", str(tmp_path / "c.yaml"))
        for a in args
    ]
    if args[:2] == ["config", "update"]:
        (tmp_path / "c.yaml").write_text("distributed_type: 'NO'\n")
    modules = _modules_after(args, tmp_path)
    assert "torch" not in modules
    assert "numpy" not in modules


def test_help_lists_commands(tmp_path):
    result = accel("--help", home=tmp_path)
    assert result.returncode == 0
    for name in ("launch", "config", "env", "estimate-memory", "test"):
        assert f"  {name}" in result.stdout


def test_no_args_prints_help_exit_1(tmp_path):
    result = accel(home=tmp_path)
    assert result.returncode == 1 and "usage: accel" in result.stdout


def test_unknown_flag_suggests_and_exits_2(tmp_path):
    result = accel("config", "default", "--mixed_precison", "bf16", home=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--mixed_precison" in lines[0] and "did you mean '--mixed_precision'" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_flag_on_env(tmp_path):
    result = accel("env", "--confg_file", "x", home=tmp_path)
    assert result.returncode == 2
    assert "did you mean '--config_file'" in result.stderr and "Traceback" not in result.stderr


def test_bad_choice_is_one_line(tmp_path):
    result = accel("config", "default", "--mixed_precision", "fp64", home=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "fp64" in result.stderr


def test_unknown_command_suggests(tmp_path):
    result = accel("confg", home=tmp_path)
    assert result.returncode == 2
    assert "did you mean 'config'" in result.stderr and "Traceback" not in result.stderr


def test_known_missing_command_names_wheel(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_entry_points", lambda: {})
    monkeypatch.setattr(cli, "_installed", lambda dist: None)
    assert cli.main(["estimate-memory", "gpt2"]) == 2
    assert "pip install accel-big-model" in capsys.readouterr().err
    assert cli.main(["test"]) == 2
    assert "pip install accel-core" in capsys.readouterr().err


def test_entry_point_command_runs(monkeypatch, capsys):
    import types

    module = types.ModuleType("fake_cmd")

    def register(subparsers):
        p = subparsers.add_parser("hello")
        p.add_argument("--who_am_i", default="x")
        p.set_defaults(func=lambda ns: print("hi", ns.who_am_i) or 0)
        return p

    module.register = register

    class EP:
        name, value = "hello", "fake_cmd"

        def load(self):
            return module

    monkeypatch.setattr(cli, "_entry_points", lambda: {"hello": EP()})
    assert cli.main(["hello", "--who-am-i", "me"]) == 0
    assert "hi me" in capsys.readouterr().out
    assert "hello" in cli.format_help()


def test_dash_and_underscore_spellings(tmp_path):
    target = tmp_path / "d.yaml"
    result = accel(
        "config", "default", "--mixed-precision=bf16", "--config-file", str(target), home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "mixed_precision: bf16" in target.read_text()


def test_parser_keeps_script_args_verbatim():
    parser = AccelArgumentParser(prog="t")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("script")
    parser.add_argument("script_args", nargs="...")
    ns = parser.parse_args(["--num-processes", "2", "train.py", "--num-processes", "7", "--lr=1"])
    assert ns.num_processes == 2
    assert ns.script_args == ["--num-processes", "7", "--lr=1"]


def test_closest_flag_handles_dashes():
    parser = AccelArgumentParser(prog="t")
    parser.add_argument("--main_process_port")
    assert closest_flag("--main-proces-port", parser) == "--main_process_port"


def test_module_entry_point(tmp_path):
    from launch_cli_helpers import clean_env

    result = subprocess.run(
        [sys.executable, "-m", "accel.launch.cli", "--version"],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
    )
    assert result.returncode == 0 and result.stdout.startswith("accel ")
