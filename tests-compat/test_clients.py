"""Big-model loading, PEFT and TRL on accel's compat wheel match the real Accelerate.

``scripts/clients_run.py`` runs once here and once in the dev environment on the real
Accelerate (with the same PEFT, TRL and datasets added by ``uv run --with``); every reported
value must be equal, and each part must have done its job.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, reference_python, run_json

pytestmark = pytest.mark.slow
CLIENTS = ["peft==0.21.2", "trl==1.16.0", "datasets==5.2.0"]
PARTS = ["offload", "peft", "trl"]


@pytest.mark.timeout(1200)
def test_offload_peft_trl_same_as_real_accelerate(tmp_path: Path) -> None:
    script = str(SCRIPTS / "clients_run.py")
    with_clients = [arg for dist in CLIENTS for arg in ("--with", dist)]
    ref = reference_python()
    ref = [*ref[:-1], *with_clients, ref[-1]]
    theirs = run_json(
        [*ref, script, str(tmp_path / "ref.json"), str(tmp_path / "ref"), *PARTS],
        tmp_path / "ref.json",
    )
    ours = run_json(
        [sys.executable, script, str(tmp_path / "ours.json"), str(tmp_path / "ours"), *PARTS],
        tmp_path / "ours.json",
    )
    offload = ours["offload"]
    assert "disk" in offload["placement"], offload
    assert offload["big"] == offload["plain"]
    assert ours["peft"]["reloaded_equal"] and ours["peft"]["adapter_changes_output"]
    assert "adapter_model.safetensors" in ours["peft"]["files"]
    assert len(ours["peft"]["losses"]) == 4 and len(ours["trl"]["losses"]) == 3
    assert ours == theirs
