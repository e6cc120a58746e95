"""The compat wheel's name table matches Accelerate 1.15 and accel's current exports.

Runs in the dev environment (the real Accelerate's source is the input). When accel gains or
renames a name, rerun ``uv run python tools/compat/gen_mapping.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compat_mapping_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/compat/gen_mapping.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout.strip().splitlines()[-1])
