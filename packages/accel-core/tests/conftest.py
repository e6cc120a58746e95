"""Fixtures shared by accel-core's test modules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What a fresh interpreter imports when a user imports accel.core and logs with JSONL: checked
# by test_accelerator (lazy exports) and test_tracking (no tracker library), in one interpreter
# (each check used to start its own, 1.6 CPU s apiece for importing torch).
FRESH_IMPORT_PROBE = """
import json, sys
report = {}
import accel.core
report["accelerator_before_access"] = "accel.core.accelerator" in sys.modules
accel.core.Accelerator
report["accelerator_after_access"] = "accel.core.accelerator" in sys.modules
from accel.core import Accelerator
from accel.core.tracking import MLflowTracker, WandBTracker, get_available_trackers
get_available_trackers()
a = Accelerator(cpu=True, log_with="jsonl", project_dir=sys.argv[1])
a.init_trackers("exp"); a.log({"x": 1}); a.end_training()
report["tracker_libraries"] = sorted(
    m for m in ("wandb", "mlflow", "tensorboard") if m in sys.modules
)
print(json.dumps(report))
"""


@pytest.fixture(scope="session")
def fresh_import_probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The report of ``FRESH_IMPORT_PROBE`` run in a new interpreter (asserted to exit 0)."""
    project = tmp_path_factory.mktemp("fresh-import")
    done = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORT_PROBE, str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
