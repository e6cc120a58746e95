"""Experiment trackers through the ``Accelerator``: JSONL, TensorBoard and custom trackers."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
import torch

from accel.core import Accelerator, GeneralTracker, LoggerType, ProjectConfiguration
from accel.core.tracking import JSONLTracker, filter_trackers, get_available_trackers
from accel.state import PartialState

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_tensorboard = pytest.mark.skipif(
    not HAS_TENSORBOARD,
    reason="the tensorboard package is not installed (uv run --with tensorboard pytest ...)",
)


def _read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class ListTracker(GeneralTracker):
    name = "list"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.events: list = []

    @property
    def tracker(self):
        return self.events

    def start(self):
        self.events.append(("start",))

    def store_init_configuration(self, values):
        self.events.append(("config", values))

    def log(self, values, step=None, **kwargs):
        self.events.append(("log", values, step, kwargs))

    def finish(self):
        self.events.append(("finish",))


def test_jsonl_round_trip(tmp_path):
    accelerator = Accelerator(cpu=True, log_with="jsonl", project_dir=str(tmp_path))
    accelerator.init_trackers("exp", config={"lr": 1e-3, "batch_size": 32, "opt": "adam"})
    accelerator.log({"loss": 0.5, "acc": torch.tensor(0.75), "note": "warmup"}, step=1)
    accelerator.log({"loss": 0.25}, step=2)
    accelerator.log({"loss": float("nan")})
    tracker = accelerator.get_tracker("jsonl")
    assert isinstance(tracker, JSONLTracker)
    assert accelerator.get_tracker("jsonl", unwrap=True) is tracker.tracker
    accelerator.end_training()

    folder = tmp_path / "exp"
    rows = _read_jsonl(folder / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, None]
    assert rows[0]["values"] == {"loss": 0.5, "acc": 0.75, "note": "warmup"}
    assert rows[1]["values"] == {"loss": 0.25}
    assert rows[2]["values"] == {"loss": "nan"}
    assert all(isinstance(r["time"], float) for r in rows)
    assert rows[0]["time"] <= rows[1]["time"] <= rows[2]["time"]
    config = json.loads((folder / "config.json").read_text())
    assert config == {"lr": 1e-3, "batch_size": 32, "opt": "adam"}


def test_jsonl_appends_across_runs_and_uses_logging_dir(tmp_path, monkeypatch):
    # "all" also starts wandb and mlflow when installed: keep them offline and in tmp_path
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    config = ProjectConfiguration(project_dir=str(tmp_path / "p"), logging_dir=str(tmp_path / "l"))
    for step in (1, 2):
        accelerator = Accelerator(cpu=True, log_with=LoggerType.ALL, project_config=config)
        accelerator.init_trackers("run")
        accelerator.log({"x": step}, step=step)
        accelerator.end_training()
    rows = _read_jsonl(tmp_path / "l" / "run" / "metrics.jsonl")
    assert [r["values"]["x"] for r in rows] == [1, 2]
    assert not (tmp_path / "p" / "run").exists()


def test_unloggable_value_is_a_clear_error(tmp_path):
    accelerator = Accelerator(cpu=True, log_with="jsonl", project_dir=str(tmp_path))
    accelerator.init_trackers("exp")
    with pytest.raises(TypeError, match="cannot log 'bad'"):
        accelerator.log({"bad": object()})
    accelerator.end_training()


def test_custom_tracker_with_kwargs():
    custom = ListTracker()
    accelerator = Accelerator(cpu=True, log_with=[custom])
    accelerator.init_trackers("exp", config={"a": 1})
    accelerator.log({"loss": 1.0}, step=3, log_kwargs={"list": {"commit": True}, "other": {}})
    assert accelerator.get_tracker("list") is custom
    assert accelerator.get_tracker("list", unwrap=True) is custom.events
    with pytest.raises(ValueError, match="no tracker named 'wandb'"):
        accelerator.get_tracker("wandb")
    accelerator.end_training()
    assert custom.events == [
        ("start",),
        ("config", {"a": 1}),
        ("log", {"loss": 1.0}, 3, {"commit": True}),
        ("finish",),
    ]


def test_end_training_finishes_every_tracker_when_one_fails(tmp_path):
    class FailingTracker(ListTracker):
        name = "failing"

        def finish(self):
            raise OSError("disk full")

    failing, after = FailingTracker(), ListTracker()
    accelerator = Accelerator(cpu=True, log_with=[failing, after])
    accelerator.init_trackers("exp")
    with pytest.raises(RuntimeError, match=r"failing \(OSError\('disk full'\)\)") as raised:
        accelerator.end_training()
    assert isinstance(raised.value.__cause__, OSError)
    assert after.events[-1] == ("finish",)


def test_incomplete_custom_tracker_is_rejected():
    class Broken(GeneralTracker):
        name = "broken"

    with pytest.raises(TypeError, match="requires_logging_directory, tracker"):
        Broken()


def test_filter_trackers_errors_and_all(tmp_path):
    custom = ListTracker()
    assert filter_trackers(None) == []
    assert filter_trackers(["all", custom], logging_dir=tmp_path)[0] is custom
    assert "jsonl" in filter_trackers("all", logging_dir=tmp_path)
    assert filter_trackers(["jsonl", LoggerType.ALL], logging_dir=tmp_path) == (
        get_available_trackers()
    )
    with pytest.raises(ValueError, match="unknown tracker 'nope'"):
        filter_trackers("nope", logging_dir=tmp_path)
    with pytest.raises(ValueError, match="'comet_ml' is an Accelerate tracker"):
        filter_trackers(LoggerType.COMETML, logging_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a logging directory"):
        filter_trackers("jsonl")


def test_without_trackers_logging_is_a_no_op(tmp_path):
    accelerator = Accelerator(cpu=True)
    accelerator.init_trackers("exp", config={"a": 1})
    accelerator.log({"loss": 1.0})
    assert accelerator.trackers == []
    blank = accelerator.get_tracker("jsonl")
    assert isinstance(blank, GeneralTracker)
    accelerator.end_training()


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True, log_with="jsonl", project_dir=str(tmp_path))
    monkeypatch.setattr(PartialState, "is_main_process", property(lambda self: False))
    assert not accelerator.is_main_process
    accelerator.init_trackers("exp", config={"a": 1})
    accelerator.log({"loss": 1.0}, step=1)
    assert accelerator.trackers == []
    assert type(accelerator.get_tracker("jsonl")) is GeneralTracker
    accelerator.end_training()
    assert not (tmp_path / "exp").exists()

    direct = JSONLTracker("direct", tmp_path)  # used without an Accelerator
    direct.start()
    direct.log({"loss": 1.0})
    direct.finish()
    assert not (tmp_path / "direct").exists()


@pytest.mark.parametrize(
    ("name", "package", "extra"),
    [
        ("tensorboard", "tensorboard", "trackers"),
        ("wandb", "wandb", "wandb"),
        ("mlflow", "mlflow", "mlflow"),
    ],
)
def test_missing_tracker_library_is_explained(tmp_path, monkeypatch, name, package, extra):
    monkeypatch.setitem(sys.modules, package, None)  # how Python blocks an import
    message = f"needs the '{package}' package, which is not installed \\(pip install 'accel-core\\[{extra}\\]'\\)"
    with pytest.raises(ValueError, match=message):
        filter_trackers(name, logging_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        Accelerator(cpu=True, log_with=[name], project_dir=str(tmp_path)).init_trackers("exp")
    assert name not in get_available_trackers()
    assert "jsonl" in filter_trackers("all", logging_dir=tmp_path)


def test_importing_accel_does_not_import_tracker_libraries(fresh_import_probe):
    # A fresh interpreter (conftest.FRESH_IMPORT_PROBE) imports accel.core, the tracker
    # classes, lists the available trackers and logs with JSONL: no tracker library loads.
    assert fresh_import_probe["tracker_libraries"] == []


@needs_tensorboard
def test_tensorboard_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accelerator = Accelerator(
        cpu=True, log_with=["tensorboard", "jsonl"], project_dir=str(tmp_path)
    )
    accelerator.init_trackers(
        "tb", config={"lr": 0.01, "layers": 2}, init_kwargs={"tensorboard": {"flush_secs": 1}}
    )
    writer = accelerator.get_tracker("tensorboard", unwrap=True)
    assert type(writer).__name__ == "SummaryWriter"
    for step in range(3):
        accelerator.log({"loss": 1.0 / (step + 1), "phase": "train"}, step=step)
    accelerator.end_training()

    folder = tmp_path / "tb"
    events = [f for f in os.listdir(folder) if f.startswith("events.out.tfevents")]
    assert events
    acc = EventAccumulator(str(folder))
    acc.Reload()
    scalars = acc.Scalars("loss")
    assert [s.step for s in scalars] == [0, 1, 2]
    assert [round(s.value, 4) for s in scalars] == [1.0, 0.5, 0.3333]
    assert len(_read_jsonl(folder / "metrics.jsonl")) == 3
