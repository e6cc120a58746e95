"""The wandb tracker against the real ``wandb`` library, offline, read back from its run file."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from accel.core import Accelerator
from accel.core.tracking import WandBTracker
from accel.state import PartialState

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("wandb") is None,
        reason="wandb is not installed (uv sync installs it with the dev group)",
    ),
    pytest.mark.timeout(180),
]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Every wandb folder in ``tmp_path``, no network, no console capture."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    for var, sub in (("WANDB_CONFIG_DIR", "cfg"), ("WANDB_CACHE_DIR", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    (tmp_path / "wandb_dir").mkdir()
    yield tmp_path / "wandb_dir"
    import wandb

    wandb.teardown()  # a failed test must not leave the service behind


def _wandb_children() -> list[str]:
    """Command lines of this process's children that are wandb services."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and "wandb" in cmdline:
            found.append(cmdline)
    return found


def _records(run_file: Path) -> list:
    """The protobuf records of a ``run-*.wandb`` file (wandb's LevelDB-style record log)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    block, pos, parts, out = 32768, 7, [], []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # block trailer padding
            pos += room
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]  # 1 full, 2 first, 3 middle, 4 last
        if kind == 0:  # zero padding up to the end of the block
            pos += room
            continue
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(b"".join(parts)))
            parts = []
    return out


def _offline_run(wandb_dir: Path) -> Path:
    runs = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def _read_run(run_dir: Path) -> dict:
    (run_file,) = run_dir.glob("run-*.wandb")
    result: dict = {"config": {}, "history": [], "project": None}
    for record in _records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result["project"] = record.run.project
            for item in record.run.config.update:
                result["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                result["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            }
            result["history"].append(row)
    return result


def test_wandb_offline_round_trip(wandb_env, tmp_path):
    accelerator = Accelerator(cpu=True, log_with="wandb", project_dir=str(tmp_path / "p"))
    accelerator.init_trackers("accel-test", config={"lr": 0.001, "layers": 4, "opt": "adam"})
    tracker = accelerator.get_tracker("wandb")
    assert isinstance(tracker, WandBTracker)
    run = accelerator.get_tracker("wandb", unwrap=True)
    assert run is tracker.run and run.project == "accel-test"
    assert _wandb_children(), "wandb-core should run while the run is open"

    accelerator.log({"loss": 0.5, "acc": torch.tensor(0.75), "phase": "warmup"}, step=1)
    accelerator.log({"loss": 0.25}, step=2, log_kwargs={"wandb": {"commit": True}})
    tracker.log_table("preds", columns=["id", "label"], data=[[0, "cat"], [1, "dog"]], step=3)
    tracker.log_images({"samples": [np.zeros((8, 8, 3), dtype=np.uint8)]}, step=4)
    accelerator.end_training()

    assert tracker.tracker is None
    assert _wandb_children() == [], "end_training must stop the wandb-core service"
    run_dir = _offline_run(wandb_env)
    data = _read_run(run_dir)
    assert data["project"] == "accel-test"
    assert {k: data["config"][k] for k in ("lr", "layers", "opt")} == {
        "lr": 0.001,
        "layers": 4,
        "opt": "adam",
    }
    by_step = {row["_step"]: row for row in data["history"]}
    assert by_step[1]["loss"] == 0.5 and by_step[1]["acc"] == 0.75
    assert by_step[1]["phase"] == "warmup"
    assert by_step[2]["loss"] == 0.25
    # media are history rows whose nested keys point into files/media/
    assert by_step[3]["preds/_type"] == "table-file" and by_step[3]["preds/nrows"] == 2
    assert by_step[4]["samples/_type"] == "images/separated"
    assert by_step[4]["samples/count"] == 1
    (table_file,) = (run_dir / "files" / "media" / "table").glob("preds_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["id", "label"] and table["data"] == [[0, "cat"], [1, "dog"]]
    assert list((run_dir / "files" / "media" / "images").glob("samples_*.png"))


def test_wandb_offline_through_init_kwargs(wandb_env, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    target = tmp_path / "elsewhere"
    target.mkdir()
    accelerator = Accelerator(cpu=True, log_with="wandb")
    accelerator.init_trackers(
        "accel-kwargs",
        init_kwargs={"wandb": {"mode": "offline", "dir": str(target), "name": "first"}},
    )
    run = accelerator.get_tracker("wandb", unwrap=True)
    assert run.name == "first" and run.settings.mode == "offline"
    accelerator.log({"x": 1.0}, step=0)
    accelerator.end_training()
    assert _wandb_children() == []
    data = _read_run(_offline_run(target))
    assert data["project"] == "accel-kwargs"
    assert [row["x"] for row in data["history"]] == [1.0]


def test_wandb_misuse_is_explained(wandb_env):
    tracker = WandBTracker("accel-misuse")
    with pytest.raises(RuntimeError, match=r"WandBTracker\.log called before start"):
        tracker.log({"x": 1})
    tracker.start()
    try:
        with pytest.raises(ValueError, match="pass data= or dataframe="):
            tracker.log_table("t", columns=["a"])
        with pytest.raises(TypeError, match="'samples' must be a list of images"):
            tracker.log_images({"samples": np.zeros((4, 4, 3), dtype=np.uint8)})
    finally:
        tracker.finish()
    tracker.finish()  # a second finish does nothing
    assert _wandb_children() == []


def test_wandb_stays_off_other_processes(wandb_env, monkeypatch):
    monkeypatch.setattr(PartialState, "is_main_process", property(lambda self: False))
    tracker = WandBTracker("accel-rank1")
    tracker.start()
    tracker.store_init_configuration({"a": 1})
    tracker.log({"x": 1.0})
    tracker.finish()
    assert tracker.run is None
    assert not (wandb_env / "wandb").exists()
    assert _wandb_children() == []
