"""The MLflow tracker against the real ``mlflow`` library, read back with ``MlflowClient``."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest
import torch

from accel.core import Accelerator
from accel.core.tracking import MLflowTracker, filter_trackers
from accel.state import PartialState

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("mlflow") is None,
        reason="mlflow is not installed (uv sync installs mlflow-skinny with the dev group)",
    ),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
def clean_mlflow_env(monkeypatch):
    for var in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_ALLOW_FILE_STORE",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_RUN_ID",
        "MLFLOW_TAGS",
        "MLFLOW_NESTED_RUN",
    ):
        monkeypatch.setenv(var, "x")  # recorded, so monkeypatch restores the original state
        monkeypatch.delenv(var)


def _client(store: Path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # newer MLflow wants it to read too
    return MlflowClient(tracking_uri=store.absolute().as_uri())


def _only_run(client, experiment_name: str):
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, runs
    return runs[0]


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_mlflow_file_store_round_trip(tmp_path, monkeypatch, caplog):
    accelerator = Accelerator(cpu=True, log_with="mlflow", project_dir=str(tmp_path))
    config = {"lr": 0.001, "opt": "adam", "huge": "x" * 7000}
    config.update({f"p{i:03d}": i for i in range(150)})  # more than one batch of 100
    with caplog.at_level(logging.WARNING):
        accelerator.init_trackers("accel-exp", config=config)
        tracker = accelerator.get_tracker("mlflow")
        assert isinstance(tracker, MLflowTracker)
        run = accelerator.get_tracker("mlflow", unwrap=True)
        assert run.info.status == "RUNNING"
        for step in range(3):
            accelerator.log({"loss": 1.0 / (step + 1), "acc": torch.tensor(0.5 * step)}, step=step)
        accelerator.log({"note": "text", "big": torch.ones(3)}, step=3)
    accelerator.end_training()
    assert "dropped parameter 'huge'" in caplog.text
    assert "skipped 'note'" in caplog.text and "skipped 'big'" in caplog.text
    # nothing leaked into the environment of later code
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    assert "MLFLOW_TRACKING_URI" not in os.environ

    client = _client(tmp_path / "mlruns", monkeypatch)
    stored = _only_run(client, "accel-exp")
    assert stored.info.run_id == run.info.run_id
    assert stored.info.status == "FINISHED"
    params = stored.data.params
    assert params["lr"] == "0.001" and params["opt"] == "adam"
    assert "huge" not in params
    assert {k for k in params if k.startswith("p")} == {f"p{i:03d}" for i in range(150)}
    assert _history(client, stored.info.run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert _history(client, stored.info.run_id, "acc") == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert set(stored.data.metrics) == {"loss", "acc"}


def test_mlflow_tracking_uri_wins_and_stores_stay_apart(tmp_path, monkeypatch):
    first = Accelerator(cpu=True, log_with="mlflow", project_dir=str(tmp_path / "a"))
    first.init_trackers("exp-a")
    first.log({"x": 1.0}, step=1)
    first.end_training()

    store = tmp_path / "from_env"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.absolute().as_uri())
    assert filter_trackers("mlflow") == ["mlflow"]  # no logging directory needed now
    second = Accelerator(cpu=True, log_with="mlflow")
    second.init_trackers("exp-b", init_kwargs={"mlflow": {"tags": {"team": "nlp"}}})
    second.log({"x": 2.0}, step=1)
    second.end_training()

    client_a = _client(tmp_path / "a" / "mlruns", monkeypatch)
    assert _history(client_a, _only_run(client_a, "exp-a").info.run_id, "x") == [(1, 1.0)]
    assert client_a.get_experiment_by_name("exp-b") is None
    client_b = _client(store, monkeypatch)
    run_b = _only_run(client_b, "exp-b")
    assert run_b.data.tags["team"] == "nlp"
    assert _history(client_b, run_b.info.run_id, "x") == [(1, 2.0)]


def test_mlflow_resume_run_and_artifact(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True, log_with="mlflow", project_dir=str(tmp_path))
    accelerator.init_trackers("resume", init_kwargs={"mlflow": {"run_name": "first-part"}})
    accelerator.log({"loss": 1.0}, step=0)
    run_id = accelerator.get_tracker("mlflow").run_id
    accelerator.end_training()

    note = tmp_path / "note.txt"
    note.write_text("hello")
    again = Accelerator(cpu=True, log_with="mlflow", project_dir=str(tmp_path))
    again.init_trackers("resume", init_kwargs={"mlflow": {"run_id": run_id}})
    again.log({"loss": 0.5}, step=1)
    again.get_tracker("mlflow").log_artifact(note, artifact_path="notes")
    again.end_training()

    client = _client(tmp_path / "mlruns", monkeypatch)
    run = _only_run(client, "resume")
    assert run.info.run_name == "first-part" and run.info.status == "FINISHED"
    assert _history(client, run_id, "loss") == [(0, 1.0), (1, 0.5)]
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]


def test_mlflow_logging_dir_from_init_kwargs(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True, log_with="mlflow", project_dir=str(tmp_path / "p"))
    override = tmp_path / "override"
    accelerator.init_trackers("exp", init_kwargs={"mlflow": {"logging_dir": str(override)}})
    accelerator.end_training()
    assert not (tmp_path / "p" / "mlruns").exists()
    assert _only_run(_client(override / "mlruns", monkeypatch), "exp").info.status == "FINISHED"


def test_mlflow_bad_input_is_explained(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"needs a logging directory.*or set MLFLOW_TRACKING_URI"):
        filter_trackers("mlflow")
    with pytest.raises(ValueError, match="MLflowTracker needs a store"):
        MLflowTracker("exp")
    monkeypatch.setenv("MLFLOW_TAGS", "team=nlp")
    with pytest.raises(ValueError, match="MLFLOW_TAGS must be a JSON object"):
        MLflowTracker("exp", tmp_path)
    monkeypatch.delenv("MLFLOW_TAGS")
    tracker = MLflowTracker("exp", tmp_path)
    with pytest.raises(RuntimeError, match=r"MLflowTracker\.log called before start"):
        tracker.log({"x": 1.0})


def test_mlflow_stays_off_other_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(PartialState, "is_main_process", property(lambda self: False))
    tracker = MLflowTracker("exp", tmp_path)
    tracker.start()
    tracker.store_init_configuration({"a": 1})
    tracker.log({"x": 1.0})
    tracker.finish()
    assert tracker.tracker is None and tracker.run_id is None
    assert not (tmp_path / "mlruns").exists()
