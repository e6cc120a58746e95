"""transformers' Trainer on accel's compat wheel gives the real Accelerate's losses.

Each scenario runs ``scripts/trainer_run.py`` (train with checkpoints, evaluate, resume from a
checkpoint) once in the dev environment on the real Accelerate and once here on accel, and
compares every logged loss and the eval loss exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import (
    SCRIPTS,
    compat_tool,
    reference_launch,
    reference_python,
    run_json,
    run_reference_json,
)

pytestmark = pytest.mark.slow
SCRIPT = str(SCRIPTS / "trainer_run.py")


def _args(tmp: Path, tag: str, *extra: str) -> tuple[list[str], Path]:
    out = tmp / f"{tag}.json"
    return [SCRIPT, str(out), str(tmp / tag), *extra], out


def _same(ours: dict, theirs: dict) -> None:
    assert ours["world_size"] == theirs["world_size"]
    assert ours["checkpoints"] == theirs["checkpoints"] == ["checkpoint-4", "checkpoint-8"]
    assert len(ours["train_losses"]) == 8
    for key in ("train_losses", "eval_loss", "resumed_losses"):
        assert ours[key] == theirs[key], key


@pytest.mark.parametrize(
    "extra", [(), ("--grad-accum", "2", "--bf16")], ids=["plain", "accum-bf16"]
)
def test_one_process(tmp_path: Path, extra: tuple[str, ...]) -> None:
    args, out = _args(tmp_path, "ref", *extra)
    theirs = run_json([*reference_python(), *args], out)
    args, out = _args(tmp_path, "ours", *extra)
    ours = run_json([sys.executable, *args], out)
    assert theirs["world_size"] == 1
    _same(ours, theirs)


@pytest.mark.timeout(1800)
def test_two_processes_accel_and_accelerate_launch(tmp_path: Path) -> None:
    args, out = _args(tmp_path, "ref")
    theirs = run_reference_json(
        [*reference_launch(2, 29631), *args], out, {"ACCELERATE_USE_CPU": "1"}
    )
    assert theirs["world_size"] == 2
    args, out = _args(tmp_path, "accel")
    by_accel = run_json(
        [
            compat_tool("accel"),
            "launch",
            "--num_processes",
            "2",
            "--main_process_port",
            "29632",
            *args,
        ],
        out,
    )
    args, out = _args(tmp_path, "accelerate")
    by_accelerate = run_json(
        [
            compat_tool("accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--main_process_port",
            "29633",
            *args,
        ],
        out,
    )
    # Without ACCELERATE_USE_CPU: accel's launcher refuses it together with --multi_gpu
    # (docs/compat.md); on a machine without GPUs accel's processes use gloo on CPU anyway.
    _same(by_accel, theirs)
    _same(by_accelerate, theirs)
