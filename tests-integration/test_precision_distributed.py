"""fp16 on CPU for real: ``accel launch --cpu --num_processes 2 --mixed_precision fp16``.

One launch of ``workers/precision_checks.py``; the tests read its per-rank report. Compares
the fp16 weights with an fp32 run of the same data here, in plain Python.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from background import background
from launching import WORKERS, LaunchResult, _read_reports, clean_environment, declared_checks

pytestmark = pytest.mark.slow

ACCEL = Path(sys.executable).parent / "accel"
RANKS = (0, 1)
# fp16 keeps ~3 decimal digits; measured: 6 SGD steps end 2.6e-5 from fp32 (weights move 0.12).
FP16_TOLERANCE = 1e-3


@background(seconds=18, timeout=240)
def fp16_run(out: Path) -> LaunchResult:
    out.mkdir(parents=True, exist_ok=True)
    environ = clean_environment({"ACCEL_IT_OUT": str(out), "XDG_CONFIG_HOME": str(out / "xdg")})
    environ["HF_HOME"] = str(out / "hf")
    command = [str(ACCEL), "launch", "--cpu", "--num_processes", "2"]
    command += ["--mixed_precision", "fp16", str(WORKERS / "precision_checks.py")]
    result = subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=240, cwd=WORKERS
    )
    return LaunchResult(
        "precision_checks.py fp16",
        result.returncode,
        result.stdout,
        result.stderr,
        _read_reports(out),
    )


@pytest.mark.parametrize("check", declared_checks("precision_checks.py"))
def test_fp16_check(fp16_run, check):
    fp16_run.assert_passed(check, RANKS)


def test_fp16_launch_exits_cleanly(fp16_run):
    assert fp16_run.returncode == 0, fp16_run.diagnostics()


def test_fp16_scale_halves_on_overflow(fp16_run):
    for rank in RANKS:
        before, after = fp16_run.value("scales", rank)
        assert after == before / 2


def _largest_difference(ours: dict[str, list[float]], reference: dict[str, list[float]]) -> float:
    assert sorted(ours) == sorted(reference)
    return max(
        abs(a - b) for name in ours for a, b in zip(ours[name], reference[name], strict=True)
    )


def test_fp16_weights_stay_close_to_fp32(fp16_run):
    for rank in RANKS:
        ours = fp16_run.value("weights_fp16", rank)
        reference = fp16_run.value("weights_fp32", rank)
        moved = _largest_difference(reference, fp16_run.value("weights_init", rank))
        worst = _largest_difference(ours, reference)
        assert moved > 10 * FP16_TOLERANCE, moved  # training really moved the weights
        assert worst < FP16_TOLERANCE, (rank, worst, moved)
    assert fp16_run.value("weights_fp16", 0) == fp16_run.value("weights_fp16", 1)
