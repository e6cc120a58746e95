"""Checkpoints move between accel and Hugging Face Accelerate, in both directions.

One library writes a checkpoint with ``Accelerator(cpu=True).save_state`` and keeps training;
the other, in a fresh process started from another seed, loads it and trains the same steps:
losses (with dropout, ``random`` and numpy draws), weights, scheduler, custom object and step
counter must match exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from background import background
from launching import base_environment

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "workers" / "checkpoint_compat.py"


def _run(library: str, mode: str, folder: Path, report: Path) -> dict:
    env = {**base_environment(), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    result = subprocess.run(
        [sys.executable, str(WORKER), library, mode, str(folder), str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, f"{library} {mode} failed:\n{result.stderr[-4000:]}"
    return json.loads(report.read_text())


def _save_then_load(writer: str, reader: str, tmp_path: Path) -> tuple[Path, dict, dict]:
    """``writer`` saves into ``tmp_path/ckpt`` and trains on; ``reader`` loads and trains."""
    pytest.importorskip("accelerate")  # raised again in the fixture that waits for this job
    tmp_path.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / "ckpt"
    saved = _run(writer, "save", folder, tmp_path / "saved.json")
    resumed = _run(reader, "load", folder, tmp_path / "resumed.json")
    return folder, saved, resumed


# Each direction is a background job (background.py): two fresh processes one after the other.
@background(seconds=15, timeout=2 * 180)
def accelerate_to_accel(tmp_path: Path) -> tuple[Path, dict, dict]:
    return _save_then_load("accelerate", "accel", tmp_path)


@background(seconds=15, timeout=2 * 180)
def accel_to_accelerate(tmp_path: Path) -> tuple[Path, dict, dict]:
    return _save_then_load("accel", "accelerate", tmp_path)


@pytest.fixture(scope="module")
def directions(
    accelerate_to_accel: tuple[Path, dict, dict], accel_to_accelerate: tuple[Path, dict, dict]
) -> dict[tuple[str, str], tuple[Path, dict, dict]]:
    """(writer, reader) -> the checkpoint folder, the writer's and the reader's reports."""
    return {
        ("accelerate", "accel"): accelerate_to_accel,
        ("accel", "accelerate"): accel_to_accelerate,
    }


@pytest.mark.parametrize(("writer", "reader"), [("accelerate", "accel"), ("accel", "accelerate")])
def test_checkpoint_written_by_one_library_resumes_in_the_other(
    directions: dict[tuple[str, str], tuple[Path, dict, dict]], writer: str, reader: str
) -> None:
    folder, saved, resumed = directions[writer, reader]
    assert (folder / "model.safetensors").is_file()
    assert (folder / "optimizer.bin").is_file()
    assert (folder / "random_states_0.pkl").is_file()
    assert (folder / "custom_checkpoint_0.pkl").is_file()
    assert resumed == saved
