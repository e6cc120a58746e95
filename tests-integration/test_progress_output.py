"""What a person watching a 2-process job sees: progress bars, rank prefixes, per-rank logs.

Two real ``accel launch`` runs of ``workers/progress_job.py``, each on a pseudo-terminal (the
bars are meant for terminals): the first with ``--rank_prefix`` (one bar, from rank 0; every
line whole and prefixed; accel's warning once), the second with ``ACCEL_PROGRESS=0``,
``--log_dir`` and rank 1 failing (no bar; each rank's lines in its own file; the failure
summary names the failed rank's log files).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from launching import ACCEL, WORKERS, clean_environment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

JOB = WORKERS / "progress_job.py"
LINE = re.compile(r"rank([01]) line (\d+) x{60}")
WARNING = "not used by Sequential"


def run_on_terminal(argv: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Run ``argv`` with stdin/stdout/stderr on a new pseudo-terminal; (status, output)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal has exited
                break
            if not data:
                break
            chunks.append(data)
        else:
            process.kill()
            pytest.fail(f"{argv} did not finish in {timeout} s")
    finally:
        os.close(master)
    status = process.wait(timeout=60)
    return status, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def launch(tmp_path: Path, *flags: str, extra_env: dict[str, str] | None = None):
    argv = [str(ACCEL), "launch", "--cpu", "--num_processes", "2", *flags]
    argv += [str(JOB), str(tmp_path / "checkpoint")]
    return run_on_terminal(argv, clean_environment(extra_env))


def test_rank_prefix_one_bar_on_rank_0_and_one_warning(tmp_path: Path) -> None:
    status, output = launch(tmp_path, "--rank_prefix")
    assert status == 0, output[-3000:]
    lines = [line for line in output.split("\n") if line]
    unprefixed = [line for line in lines if not re.match(r"\[rank [01]\] ", line)]
    assert not unprefixed, unprefixed[:5]
    # Whole lines only: every printed line is one rank's, under its own prefix.
    printed = {0: [], 1: []}
    for line in lines:
        match = LINE.search(line)
        if match:
            rank = int(match.group(1))
            assert line == f"[rank {rank}] {match.group(0)}", line
            printed[rank].append(int(match.group(2)))
    assert printed == {0: list(range(1000)), 1: list(range(1000))}
    bars = [line for line in lines if "Loading checkpoint shards" in line]
    assert len(bars) == 1 and bars[0].startswith("[rank 0] "), bars
    assert "100%" in bars[0] and "\r" not in bars[0], bars
    warnings = [line for line in lines if WARNING in line]
    assert len(warnings) == 1, warnings


def test_progress_off_log_dir_and_failure_summary(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    status, output = launch(
        tmp_path,
        "--log_dir",
        str(logs),
        extra_env={"ACCEL_PROGRESS": "0", "FAIL_RANK": "1"},
    )
    assert status == 3, output[-3000:]
    assert "Loading checkpoint shards" not in output
    assert not LINE.search(output), "with --log_dir and no --tee the lines go to files only"
    assert f"full output of rank 1: {logs / 'rank_1.stdout.log'}" in output, output[-2000:]
    for rank in (0, 1):
        text = (logs / f"rank_{rank}.stdout.log").read_text()
        found = [(int(m.group(1)), int(m.group(2))) for m in LINE.finditer(text)]
        assert found == [(rank, i) for i in range(1000)]
        assert "Loading checkpoint shards" not in (logs / f"rank_{rank}.stderr.log").read_text()
    assert WARNING in (logs / "rank_0.stderr.log").read_text()
    assert WARNING not in (logs / "rank_1.stderr.log").read_text()
