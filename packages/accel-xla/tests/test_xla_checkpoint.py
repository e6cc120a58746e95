"""save_state / load_state / save_model on XLA: CPU tensors on disk, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _xla_loops import job, make_objects, run_epochs
from safetensors.torch import load_file

from accel.core import Accelerator


def _prepared(accelerator: Accelerator) -> tuple:
    return accelerator.prepare(*make_objects())


def test_save_state_writes_cpu_tensors_and_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with job(monkeypatch, xla=True):
        accelerator = Accelerator()
        model, optimizer, loader, scheduler = _prepared(accelerator)
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=1)
        folder = accelerator.save_state(tmp_path / "ckpt")
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=1)
        expected = accelerator.get_state_dict(model)

        weights = load_file(str(Path(folder) / "model.safetensors"))
        assert {t.device.type for t in weights.values()} == {"cpu"}
        state = torch.load(Path(folder) / "optimizer.bin", weights_only=True)  # no map_location
        moments = [t for s in state["state"].values() for t in s.values() if t.dim() > 0]
        assert moments and {t.device.type for t in moments} == {"cpu"}

        accelerator.load_state(folder)
        assert model[0].weight.device.type == "xla"
        assert optimizer.state_dict()["state"][0]["exp_avg"].device.type == "cpu"
        assert next(iter(optimizer.optimizer.state.values()))["exp_avg"].device.type == "xla"
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=1)
        resumed = accelerator.get_state_dict(model)
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0, msg=name)


def test_xla_checkpoint_loads_into_a_cpu_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with job(monkeypatch, xla=True):
        accelerator = Accelerator()
        model, optimizer, loader, scheduler = _prepared(accelerator)
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=1)
        folder = accelerator.save_state(tmp_path / "ckpt")
        saved = accelerator.get_state_dict(model)
    with job(monkeypatch, xla=False):
        accelerator = Accelerator()
        model, optimizer, loader, scheduler = _prepared(accelerator)
        accelerator.load_state(folder)
        assert model[0].weight.device.type == "cpu"
        for name, value in model.state_dict().items():
            torch.testing.assert_close(value, saved[name], rtol=0, atol=0, msg=name)


def test_save_model_writes_cpu_safetensors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with job(monkeypatch, xla=True):
        accelerator = Accelerator()
        model, optimizer, loader, scheduler = _prepared(accelerator)
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=1)
        accelerator.save_model(model, tmp_path / "out")
        on_device = {k: v.cpu() for k, v in model.state_dict().items()}
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert written.keys() == on_device.keys()
    for name, value in written.items():
        assert value.device.type == "cpu"
        torch.testing.assert_close(value, on_device[name], rtol=0, atol=0, msg=name)
