"""``accel config`` (questions, default, update) and ``accel env``, through the real command."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from launch_cli_helpers import ACCELERATE, accel, accel_in_process, clean_env

from accel.launch.config_file import load_config

needs_accelerate = pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate not installed")


# One interpreter with the real Accelerate serves both directions of the round trip (it
# imports torch: ~3-5 CPU-s, which two interpreters paid twice). Each part prints its own
# status line, so a failure of one direction fails only its test.
ROUND_TRIP = """
import sys, traceback
ours, theirs = sys.argv[1:3]
try:  # what the `accelerate` console script runs
    from accelerate.commands.accelerate_cli import main
    sys.argv = ["accelerate", "config", "default", "--mixed_precision", "fp16",
                "--config_file", theirs]
    main()
    print("WROTE ok", flush=True)
except BaseException:
    traceback.print_exc()
    print("WROTE failed", flush=True)
try:
    from accelerate.commands.config.config_args import load_config_from_file
    cfg = load_config_from_file(ours)
    print("LOADED", cfg.mixed_precision, cfg.distributed_type.value, cfg.num_processes,
          cfg.use_cpu, flush=True)
except Exception:
    traceback.print_exc()
    print("LOADED failed", flush=True)
"""


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """``accel config default`` writes ours; one Accelerate interpreter writes theirs with
    ``accelerate config default`` and loads ours."""
    home = tmp_path_factory.mktemp("round_trip")
    ours, theirs = home / "accel.yaml", home / "theirs.yaml"
    written = accel(
        "config", "default", "--mixed_precision", "bf16", "--config_file", str(ours), home=home
    )
    done = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(ours), str(theirs)],
        capture_output=True,
        text=True,
        env=clean_env(home),
        timeout=300,
    )
    status = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return SimpleNamespace(home=home, theirs=theirs, written=written, done=done, status=status)


@needs_accelerate
def test_accel_default_loads_in_accelerate(round_trip):
    assert round_trip.written.returncode == 0, round_trip.written.stderr
    loaded = round_trip.status.get("LOADED", "")
    assert loaded.split()[:2] == ["bf16", "NO"], round_trip.done.stderr


@pytest.mark.slow
@needs_accelerate
def test_accelerate_default_loads_in_accel(round_trip):
    assert round_trip.status.get("WROTE") == "ok", round_trip.done.stderr
    target, home = round_trip.theirs, round_trip.home
    cfg = load_config(target)
    assert cfg.mixed_precision == "fp16" and cfg.compute_environment == "LOCAL_MACHINE"
    # and ``accel config update`` rewrites it as YAML that Accelerate still reads
    assert accel("config", "update", "--config_file", str(target), home=home).returncode == 0
    assert not target.read_text().lstrip().startswith("{")
    assert load_config(target).to_dict() == cfg.to_dict()


def test_default_goes_to_xdg_location(tmp_path):
    result = accel("config", "default", home=tmp_path)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "xdg" / "accel" / "default_config.yaml"
    assert str(target) in result.stdout and target.is_file()
    again = accel("config", "default", home=tmp_path)
    assert again.returncode == 0 and "already exists" in again.stdout


def test_default_respects_env_var(tmp_path):
    env = clean_env(tmp_path)
    env["ACCEL_CONFIG_FILE"] = str(tmp_path / "from_env.yaml")
    assert accel("config", "default", home=tmp_path, env=env).returncode == 0
    assert (tmp_path / "from_env.yaml").is_file()


def test_interactive_all_defaults(tmp_path):
    target = tmp_path / "q.yaml"
    result = accel("config", "--config_file", str(target), home=tmp_path, stdin="")
    assert result.returncode == 0, result.stderr
    cfg = load_config(target)
    assert cfg.distributed_type == "NO" and cfg.mixed_precision == "no"


def test_interactive_multi_gpu_fsdp(tmp_path):
    target = tmp_path / "q.yaml"
    answers = [
        "2",  # multi-GPU
        "2",  # machines
        "1",  # rank
        "10.1.2.3",  # main ip
        "",  # port 29500
        "no",  # same network
        "c10d",  # rdzv backend by name
        "yes",  # debug
        "",  # dynamo: no
        "n",  # deepspeed
        "y",  # fsdp
        "",  # version 2
        "",  # reshard yes
        "",  # offload no
        "",  # TRANSFORMER_BASED_WRAP
        "LlamaDecoderLayer",
        "",  # SHARDED_STATE_DICT
        "",  # cpu ram efficient yes
        "",  # activation checkpointing no
        "16",  # processes
        "0,1,2,3,4,5,6,7",
        "bf16",
    ]
    result = accel(
        "config", "--config_file", str(target), home=tmp_path, stdin="\n".join(answers) + "\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = load_config(target)
    assert cfg.distributed_type == "FSDP" and cfg.num_machines == 2 and cfg.machine_rank == 1
    assert cfg.main_process_ip == "10.1.2.3" and cfg.main_process_port == 29500
    assert cfg.rdzv_backend == "c10d" and cfg.same_network is False and cfg.debug is True
    assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert cfg.num_processes == 16 and cfg.mixed_precision == "bf16"


def test_interactive_bad_answer_is_asked_again(tmp_path):
    """On a terminal (a real pseudo-terminal here) a bad answer is asked again."""
    import os
    import pty
    import select
    import time

    from launch_cli_helpers import ACCEL

    target = tmp_path / "q.yaml"
    answers = "99\nbanana\n1\n\n\n\n4\n\n"  # invalid choices, then multi-CPU, 4 processes
    command = [str(ACCEL)] if ACCEL.exists() else [sys.executable, "-m", "accel.launch.cli"]
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*command, "config", "--config_file", str(target)],
        stdin=secondary,
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=clean_env(tmp_path),
    )
    os.close(secondary)
    os.write(primary, answers.encode() + b"\x04")  # then end of input (Ctrl-D)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    if process.poll() is None:
        process.kill()
    assert process.wait(timeout=60) == 0, process.stderr.read().decode()
    os.close(primary)
    assert b"please type a number from 0 to" in seen
    cfg = load_config(target)
    assert cfg.distributed_type == "MULTI_CPU" and cfg.num_processes == 4 and cfg.use_cpu is True


def test_piped_bad_answer_exits_2_and_writes_nothing(tmp_path):
    """From a pipe, asking again would eat the next answer: the first bad one is an error."""
    target = tmp_path / "q.yaml"
    result = accel("config", "--config_file", str(target), home=tmp_path, stdin="99\nbanana\n")
    assert result.returncode == 2
    assert "'Which kind of machine?' got '99'" in result.stderr
    assert "nothing was written" in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()


def test_interactive_input_ends_without_default(tmp_path):
    answers = "2\n2\n1\n"  # multi-GPU, 2 machines, rank 1, then EOF at the IP question
    result = accel(
        "config", "--config_file", str(tmp_path / "q.yaml"), home=tmp_path, stdin=answers
    )
    assert result.returncode == 2
    assert "input ended" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "q.yaml").exists()


def test_update_legacy_file(tmp_path):
    target = tmp_path / "old.yaml"
    target.write_text("distributed_type: 'NO'\nfp16: true\ndynamo_backend: 'NO'\n")
    result = accel("config", "update", "--config_file", str(target), home=tmp_path)
    assert result.returncode == 0, result.stderr
    text = target.read_text()
    assert (
        "fp16: true" not in text
        and "mixed_precision: fp16" in text
        and "dynamo_backend" not in text
    )


@pytest.fixture
def accel_here(tmp_path, monkeypatch, capsys):
    """``accel *args`` in this process, home in ``tmp_path`` (see accel_in_process)."""
    return lambda *args: accel_in_process(
        *args, home=tmp_path, monkeypatch=monkeypatch, capsys=capsys
    )


def test_update_bad_file_reports(tmp_path, accel_here):
    """In process, as the two tests below (the piped-answer tests run the console script
    for the exit-2 wiring)."""
    target = tmp_path / "bad.yaml"
    target.write_text("distributed_type: 'NO'\nnum_procs: 2\n")
    result = accel_here("config", "update", "--config_file", str(target))
    assert result.returncode == 2
    assert "num_procs" in result.stderr and "num_processes" in result.stderr
    assert "Traceback" not in result.stderr


def test_update_without_any_file(accel_here):
    result = accel_here("config", "update")
    assert result.returncode == 2 and "no config file found" in result.stderr


def test_config_errors_name_the_path_and_exit_2(tmp_path, accel_here):
    folder = tmp_path / "a_dir"
    folder.mkdir()
    result = accel_here("config", "default", "--config_file", str(folder))
    assert result.returncode == 2
    assert f"{folder}: it is a directory; pass a file path" in result.stderr
    result = accel_here("config", "update", "--config_file", str(folder))
    assert result.returncode == 2 and f"{folder} is a directory" in result.stderr
    assert "Errno" not in result.stderr
    result = accel_here("config", "update", "--config_file", str(tmp_path / "no.yaml"))
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.slow
def test_env_report(tmp_path):
    theirs = tmp_path / "hf" / "accelerate" / "default_config.yaml"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\n")
    result = accel("env", home=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("Python version", "accel-launch version", "PyTorch version", "System RAM"):
        assert needle in out
    assert f"Config file: {theirs} (accelerate default)" in out
    assert "\t- num_processes: 2" in out


def test_env_invalid_config_is_reported_not_raised(tmp_path, accel_here):
    """In process (test_env_report runs the console script; a second interpreter importing
    torch adds nothing to what ``main`` prints and returns)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: NOPE\n")
    result = accel_here("env", "--config_file", str(bad))
    assert result.returncode == 0 and "INVALID" in result.stdout and "NOPE" in result.stdout
