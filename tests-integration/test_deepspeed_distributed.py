"""accel-deepspeed with real DeepSpeed on 2 gloo processes (see ``workers/deepspeed_checks.py``).

ZeRO-1/2/3 train to DDP's weights, checkpoints resume exactly, ZeRO-3 ``save_model`` writes a
full model, ``zero3_init_context`` builds partitioned models, ``"auto"`` values are filled,
two plugins (student/teacher) work together, bad input is refused, CPU offload matches DDP
(it compiles DeepSpeedCPUAdam on a clean machine), all in one launch (which also runs the
sequence-parallel checks of test_ndp_distributed.py). An example script runs end to end under
``accel launch --use_deepspeed``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from background import background
from launching import LaunchResult, clean_environment, declared_checks

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ACCEL = Path(sys.executable).parent / "accel"
CHECKS = declared_checks("deepspeed_checks.py")  # the launch runs sp_checks.py's checks too


def test_deepspeed_launch_finished(deepspeed_run: LaunchResult) -> None:
    assert not deepspeed_run.timed_out and deepspeed_run.returncode == 0, (
        deepspeed_run.diagnostics()
    )
    assert sorted(deepspeed_run.reports) == [0, 1], deepspeed_run.diagnostics()


@pytest.mark.parametrize("check", CHECKS)
def test_deepspeed(deepspeed_run: LaunchResult, check: str) -> None:
    deepspeed_run.assert_passed(check, (0, 1))


@background(seconds=20, timeout=600)
def deepspeed_example_run(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """examples/train_deepspeed.py under ``accel launch``, writing into ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    report = tmp_path / "report.json"
    command = [
        str(ACCEL), "launch", "--use_deepspeed", "--zero_stage", "3", "--cpu",
        "--num_processes", "2", str(ROOT / "examples" / "train_deepspeed.py"),
        "--epochs", "3", "--out", str(tmp_path / "model"), "--report", str(report),
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=clean_environment(), cwd=tmp_path
    )


def test_example_under_accel_launch_use_deepspeed(
    deepspeed_example_run: subprocess.CompletedProcess[str],
) -> None:
    """``accel launch --use_deepspeed --zero_stage 3`` runs examples/train_deepspeed.py: two
    processes, ZeRO-3 from the flags, the loss goes down, the gathered model is written."""
    result = deepspeed_example_run
    tmp_path = Path(result.args[-1]).parent  # the job's folder, where the report is
    report = tmp_path / "report.json"
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    summary = json.loads(report.read_text())
    assert summary["distributed_type"] == "DEEPSPEED", summary
    assert summary["num_processes"] == 2 and summary["zero_stage"] == 3, summary
    assert summary["micro_batch"] == 8, summary
    assert summary["losses"][-1] < summary["losses"][0] / 2, summary
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert weights["0.weight"].shape == (64, 16) and weights["2.weight"].shape == (1, 64)
