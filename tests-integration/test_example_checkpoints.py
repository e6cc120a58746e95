"""``examples/train_with_checkpoints.py`` under ``accel launch`` (2 CPU processes): a run
resumed from an older checkpoint ends with the weights of the uninterrupted run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from background import background
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


@dataclass
class ExampleRuns:
    """The two launches of the example on one project, and what the test removed between."""

    project: Path
    first: str
    checkpoints: list[Path]
    second: str


@background(seconds=32, timeout=2 * 240)
def example_runs(tmp_path: Path) -> ExampleRuns:
    """First launch, the last checkpoint removed, second launch (in the background)."""
    project = tmp_path / "run"
    first = _launch(project)
    checkpoints = sorted(
        (project / "checkpoints").iterdir(), key=lambda p: int(p.name.split("_")[1])
    )
    if [p.name for p in checkpoints][-2:] == ["checkpoint_2", "checkpoint_3"]:
        shutil.rmtree(checkpoints[-1])  # as if the job died before the last save
        second = _launch(project)
    else:
        second = ""  # the test fails on the listing
    return ExampleRuns(project, first, checkpoints, second)


@pytest.mark.slow
def test_resume_from_an_older_checkpoint_reaches_the_same_weights(
    example_runs: ExampleRuns,
) -> None:
    first, checkpoints, second = example_runs.first, example_runs.checkpoints, example_runs.second
    assert "starting from scratch" in first
    weights = re.search(r"done: first weights (\[.*\])", first).group(1)
    assert [p.name for p in checkpoints][-2:] == ["checkpoint_2", "checkpoint_3"], checkpoints
    assert f"resumed from {checkpoints[-2]}" in second, second
    assert f"done: first weights {weights}" in second, (weights, second)
