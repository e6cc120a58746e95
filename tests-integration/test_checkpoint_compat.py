"""Checkpoints move between accel and Hugging Face Accelerate, in both directions.

One library writes a checkpoint with ``Accelerator(cpu=True).save_state`` and keeps training;
the other, in a fresh process started from another seed, loads it and trains the same steps:
losses (with dropout, ``random`` and numpy draws), weights, scheduler, custom object and step
counter must match exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "workers" / "checkpoint_compat.py"


def _run(library: str, mode: str, folder: Path, report: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    result = subprocess.run(
        [sys.executable, str(WORKER), library, mode, str(folder), str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, f"{library} {mode} failed:\n{result.stderr[-4000:]}"
    return json.loads(report.read_text())


@pytest.mark.parametrize(("writer", "reader"), [("accelerate", "accel"), ("accel", "accelerate")])
def test_checkpoint_written_by_one_library_resumes_in_the_other(
    tmp_path: Path, writer: str, reader: str
) -> None:
    pytest.importorskip("accelerate")
    folder = tmp_path / "ckpt"
    saved = _run(writer, "save", folder, tmp_path / "saved.json")
    assert (folder / "model.safetensors").is_file()
    assert (folder / "optimizer.bin").is_file()
    assert (folder / "random_states_0.pkl").is_file()
    assert (folder / "custom_checkpoint_0.pkl").is_file()
    resumed = _run(reader, "load", folder, tmp_path / "resumed.json")
    assert resumed == saved
