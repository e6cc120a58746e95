"""Routing of workers' output (accel.launch.worker_output), in this process: no launch."""

from __future__ import annotations

import io
import os
import threading

import pytest

from accel.launch.settings import SettingError, resolve
from accel.launch.worker_output import LinePrinter, OutputPlan, parse_tee, pump


def test_prefixed_lines_stay_whole_when_two_ranks_write_at_once() -> None:
    console = io.BytesIO()
    printer = LinePrinter(console)
    pipes = [os.pipe() for _ in range(2)]
    readers = [
        threading.Thread(
            target=pump,
            args=(os.fdopen(r, "rb", buffering=0), printer, None, None, f"[rank {i}] ".encode()),
        )
        for i, (r, _) in enumerate(pipes)
    ]
    for reader in readers:
        reader.start()

    def write(rank: int, fd: int) -> None:
        with os.fdopen(fd, "wb", buffering=0) as out:
            for i in range(1000):  # odd chunking: lines cut in two writes
                line = f"rank{rank} line {i}\n".encode()
                out.write(line[:5])
                out.write(line[5:])

    writers = [threading.Thread(target=write, args=(i, w)) for i, (_, w) in enumerate(pipes)]
    for thread in writers:
        thread.start()
    for thread in writers + readers:
        thread.join()
    lines = console.getvalue().decode().splitlines()
    assert len(lines) == 2000
    for rank in (0, 1):
        mine = [line for line in lines if line.startswith(f"[rank {rank}] ")]
        assert mine == [f"[rank {rank}] rank{rank} line {i}" for i in range(1000)]


def test_pump_collapses_bar_redraws_only_with_a_prefix_and_logs_raw_bytes() -> None:
    data = b"\rbar 0%\rbar 100%\nlast without newline"
    log, prefixed, plain = io.BytesIO(), io.BytesIO(), io.BytesIO()
    pump(io.BytesIO(data), LinePrinter(prefixed), log, prefix=b"[rank 0] ")
    pump(io.BytesIO(data), LinePrinter(plain), None)
    assert log.getvalue() == data
    assert prefixed.getvalue() == b"[rank 0] bar 100%\n[rank 0] last without newline\n"
    assert plain.getvalue() == data + b"\n"  # redraws pass through live


def test_output_plan_tee_and_paths(tmp_path) -> None:
    plan = OutputPlan(log_dir=str(tmp_path), tee=parse_tee("1", "--tee"))
    assert (plan.to_console("stdout"), plan.to_console("stderr")) == (True, False)
    assert plan.log_path(3, "stdout") == tmp_path / "rank_3.stdout.log"
    assert OutputPlan().to_console("stderr") and not OutputPlan().capture_stdout


def test_launch_settings_for_output_come_from_flag_env_or_config() -> None:
    r = resolve({"tee": None}, {"ACCEL_RANK_PREFIX": "1"}, {"log_dir": "logs", "tee": True})
    assert (r.values["log_dir"], r.values["tee"], r.values["rank_prefix"]) == ("logs", 3, True)
    assert r.sources["rank_prefix"] == "env ACCEL_RANK_PREFIX"
    with pytest.raises(SettingError, match=r"--tee='both'.*0 \(no stream\)"):
        resolve({"tee": "both"}, {}, {})


def test_tee_without_log_dir_is_refused_before_anything_starts(tmp_path) -> None:
    from accel.launch.commands.launch import LaunchError, launch, launch_command_parser

    script = tmp_path / "t.py"
    script.write_text("raise SystemExit(5)")
    args = launch_command_parser().parse_args(["--tee", "3", str(script)])
    with pytest.raises(LaunchError, match=r"tee=3 \(from flag --tee\).*needs --log_dir"):
        launch(args, environ={})
