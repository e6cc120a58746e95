"""``examples/train_with_checkpoints.py`` under ``accel launch`` (2 CPU processes): a run
resumed from an older checkpoint ends with the weights of the uninterrupted run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from launching import clean_environment

ROOT = Path(__file__).resolve().parents[1]
ACCEL = Path(sys.executable).parent / "accel"
EXAMPLE = ROOT / "examples" / "train_with_checkpoints.py"


def _launch(project: Path) -> str:
    command = [str(ACCEL), "launch", "--cpu", "--num_processes", "2", str(EXAMPLE), str(project)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, env=clean_environment()
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
def test_resume_from_an_older_checkpoint_reaches_the_same_weights(tmp_path: Path) -> None:
    project = tmp_path / "run"
    first = _launch(project)
    assert "starting from scratch" in first
    weights = re.search(r"done: first weights (\[.*\])", first).group(1)
    checkpoints = sorted(
        (project / "checkpoints").iterdir(), key=lambda p: int(p.name.split("_")[1])
    )
    assert [p.name for p in checkpoints][-2:] == ["checkpoint_2", "checkpoint_3"], checkpoints
    shutil.rmtree(checkpoints[-1])  # as if the job died before the last save

    second = _launch(project)
    assert f"resumed from {checkpoints[-2]}" in second, second
    assert f"done: first weights {weights}" in second, (weights, second)
