"""The option table (accel.state.options) is the one source of accel launch's flags, config
keys, value lists and child environment: what the table says is what the generated places do,
and a new entry appears everywhere without touching anything else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from accel.launch import config_questions, config_schema, protocol, settings
from accel.launch.commands.launch import launch_command_parser
from accel.launch.config_file import ConfigError, validate_config
from accel.state.options import OPTIONS, exported, option


def _flag_actions() -> dict[str, object]:
    parser = launch_command_parser()
    # keyed by the long flag (--use_cpu shares --cpu's dest, so dest would not be unique)
    return {
        flag[2:]: action
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--")
    }


def test_every_flag_of_the_table_is_in_the_parser_with_its_choices_and_help() -> None:
    actions = _flag_actions()
    for entry in OPTIONS:
        if entry.flag is None:
            assert entry.name not in actions, entry.name
            continue
        action = actions[entry.name]
        assert action.help == entry.help, entry.name
        if entry.flag in ("choice", "choice_lower"):
            assert tuple(action.choices) == entry.choices, entry.name


def test_every_config_key_of_the_table_is_validated_with_the_table_values() -> None:
    for entry in OPTIONS:
        if entry.config is None:
            continue
        keys = config_schema.NESTED[entry.section] if entry.section else config_schema.CLUSTER
        key = keys[entry.config]
        assert key.choices == entry.choices, entry.name
        if entry.choices:
            bad = {entry.config: "not-a-choice"}
            data = {entry.section: bad} if entry.section else bad
            with pytest.raises(ConfigError, match=f"{entry.config}='not-a-choice' is not valid"):
                validate_config(data, where="c.yaml")


def test_value_lists_are_the_table_s_not_copies() -> None:
    assert settings.MIXED_PRECISIONS is option("mixed_precision").choices
    assert settings.DYNAMO_MODES is option("dynamo_mode").choices
    assert config_questions._choices("rdzv_backend") == list(option("rdzv_backend").choices)
    code = Path(protocol.__file__).read_text().splitlines()
    literals = [line for line in code if '"ACCEL_' in line and ">>>" not in line]
    assert literals == []


def test_child_environment_follows_export_rules() -> None:
    values = settings.resolve({"use_fsdp": True, "cpu": True}, {}, {}).values
    env = protocol.protocol_env(values)
    for entry in OPTIONS:
        text = exported(entry, values)
        if text is None:
            assert not entry.env or entry.env[0] not in env, entry.name
        else:
            assert env[entry.env[0]] == text, entry.name
    assert env["ACCEL_FSDP_VERSION"] == "2" and "ACCEL_DEEPSPEED_ZERO_STAGE" not in env


# One entry added to the table (before accel.launch is imported) shows up in the parser,
# --help, the YAML validation, the resolution and the environment of the launched process.
_ADD_ONE_ENTRY = textwrap.dedent(
    """
    import sys
    import accel.state.options as o
    from accel.state.option_parsers import choice
    o.OPTIONS = (*o.OPTIONS, o.Option(
        "log_verbosity", "info", choice(("info", "debug")), "how much the job logs",
        "choice", o.HARDWARE, env=o.accel_env("LOG_VERBOSITY"), config="log_verbosity",
        export="always", question="How much should the job log?"))
    from accel.launch.cli import main
    from accel.launch.commands.launch import launch_command_parser
    from accel.launch.config_file import ConfigError, validate_config
    from accel.launch.settings import resolve
    parser = launch_command_parser()
    help_text = parser.format_help()
    assert "--log_verbosity {info,debug}" in help_text and "how much the job logs" in help_text
    assert parser.parse_args(["--log-verbosity", "debug", "t.py"]).log_verbosity == "debug"
    r = resolve({}, {"ACCELERATE_LOG_VERBOSITY": "DEBUG"}, {})
    print("ENV:", r.values["log_verbosity"], r.sources["log_verbosity"])
    try:
        validate_config({"log_verbosity": "loud"}, where="c.yaml")
    except ConfigError as error:
        print("YAML:", error, flush=True)
    child = "import os; print('CHILD:', os.environ['ACCEL_LOG_VERBOSITY'])"
    sys.exit(main(["launch", "--cpu", "--num_processes", "1", "--config_file", sys.argv[1],
                   "--no_python", sys.executable, "-c", child]))
    """
)


def test_one_new_entry_reaches_parser_yaml_resolution_and_child_env(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\nlog_verbosity: debug\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCEL_", "ACCELERATE_"))}
    done = subprocess.run(
        [sys.executable, "-c", _ADD_ONE_ENTRY, str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "YAML: c.yaml: log_verbosity='loud' is not valid; expected one of info, debug" in (
        done.stdout
    )
    assert "ENV: debug env ACCELERATE_LOG_VERBOSITY" in done.stdout
    assert "from it: log_verbosity=debug" in done.stderr
    assert "CHILD: debug" in done.stdout
