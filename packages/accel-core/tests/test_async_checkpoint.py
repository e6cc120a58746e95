"""``save_state(async_save=True)``: a snapshot taken at the call, written in the background."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

import accel.state
from accel.core import Accelerator, CheckpointWriteError, ProjectConfiguration, set_seed
from accel.core.checkpoint import COMPLETE_MARKER, latest_checkpoint
from accel.core.checkpoint.writer import CheckpointFile, CpuStager


def _setup(**accelerator_kwargs):
    accel.state.reset_state()
    set_seed(0)
    accelerator = Accelerator(cpu=True, **accelerator_kwargs)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def _step(accelerator, model, optimizer) -> None:
    inputs = torch.randn(8, 4)
    accelerator.backward(model(inputs).pow(2).mean())
    optimizer.step()
    optimizer.zero_grad()


def _snapshot(model, optimizer) -> tuple[dict, dict]:
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {
        i: {k: v.clone() for k, v in s.items()}
        for i, s in enumerate(optimizer.state_dict()["state"].values())
    }
    return weights, state


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same(a[key], b[key])
        else:
            assert torch.equal(a[key], b[key]), key


def test_async_checkpoint_holds_the_state_of_the_call_not_later_steps(tmp_path: Path) -> None:
    accelerator, model, optimizer = _setup()
    _step(accelerator, model, optimizer)
    expected = _snapshot(model, optimizer)
    folder = accelerator.save_state(tmp_path / "ckpt", async_save=True)
    for _ in range(3):  # training goes on while the writer runs
        _step(accelerator, model, optimizer)
    accelerator.wait_for_checkpoint()
    assert os.path.isfile(os.path.join(folder, COMPLETE_MARKER))

    accelerator.load_state(folder)
    _assert_same(_snapshot(model, optimizer)[0], expected[0])
    _assert_same(_snapshot(model, optimizer)[1], expected[1])


def test_async_and_sync_saves_write_the_same_tensors(tmp_path: Path) -> None:
    accelerator, model, optimizer = _setup()
    _step(accelerator, model, optimizer)
    accelerator.save_state(tmp_path / "sync")
    accelerator.save_state(tmp_path / "async", async_save=True)
    accelerator.wait_for_checkpoint()
    assert sorted(os.listdir(tmp_path / "sync")) == sorted(os.listdir(tmp_path / "async"))
    for name in ("model.safetensors",):
        with (
            safe_open(tmp_path / "sync" / name, "pt") as a,
            safe_open(tmp_path / "async" / name, "pt") as b,
        ):
            assert sorted(a.keys()) == sorted(b.keys())
            for key in a.keys():  # noqa: SIM118 (safe_open is not a dict)
                assert torch.equal(a.get_tensor(key), b.get_tensor(key))
    sync_opt = torch.load(tmp_path / "sync" / "optimizer.bin", weights_only=True)
    async_opt = torch.load(tmp_path / "async" / "optimizer.bin", weights_only=True)
    _assert_same(sync_opt["state"], async_opt["state"])
    assert sync_opt["param_groups"] == async_opt["param_groups"]


def test_load_state_waits_for_the_save_in_flight(tmp_path: Path) -> None:
    accelerator, model, optimizer = _setup()
    _step(accelerator, model, optimizer)
    expected = _snapshot(model, optimizer)
    folder = accelerator.save_state(tmp_path / "ckpt", async_save=True)
    _step(accelerator, model, optimizer)
    accelerator.load_state(folder)  # no explicit wait
    _assert_same(_snapshot(model, optimizer)[0], expected[0])


def test_staging_buffers_are_reused_across_saves(tmp_path: Path) -> None:
    config = ProjectConfiguration(
        project_dir=str(tmp_path), automatic_checkpoint_naming=True, total_limit=2
    )
    accelerator, model, optimizer = _setup(project_config=config)
    writer = accelerator._checkpoint_writer
    sizes = []
    for _ in range(4):
        _step(accelerator, model, optimizer)
        accelerator.save_state(async_save=True)
        sizes.append(writer.staging_bytes)
    accelerator.wait_for_checkpoint()
    assert sizes[0] > 0 and len(set(sizes)) == 1, sizes
    kept = sorted(os.listdir(tmp_path / "checkpoints"))
    assert kept == ["checkpoint_2", "checkpoint_3"], kept
    assert latest_checkpoint(tmp_path / "checkpoints").endswith("checkpoint_3")


class Unpicklable:
    """A registered object whose state cannot be written (holds a lambda)."""

    def state_dict(self) -> dict:
        return {"fn": lambda: None}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_failed_background_write_is_raised_and_publishes_nothing(tmp_path: Path) -> None:
    accelerator, model, optimizer = _setup()
    _step(accelerator, model, optimizer)
    good = accelerator.save_state(tmp_path / "good")
    accelerator.register_for_checkpointing(Unpicklable())
    accelerator.save_state(tmp_path / "bad", async_save=True)
    with pytest.raises(CheckpointWriteError, match="bad"):
        accelerator.wait_for_checkpoint()
    assert not (tmp_path / "bad").exists()
    assert os.path.isfile(os.path.join(good, COMPLETE_MARKER))
    accelerator.wait_for_checkpoint()  # the error is reported once


def test_stager_keeps_tied_tensors_tied() -> None:
    shared = torch.randn(3, 3)
    files = [CheckpointFile("model.safetensors", {"a": shared, "b": shared}, "safetensors")]
    staged = CpuStager().stage(files)[0].payload
    assert staged["a"] is staged["b"]
    assert staged["a"].data_ptr() != shared.data_ptr()
    assert torch.equal(staged["a"], shared)


def test_process_exit_finishes_the_save_in_flight(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import torch
        from accel.core import Accelerator
        accelerator = Accelerator(cpu=True)
        model = accelerator.prepare(torch.nn.Linear(512, 512))
        accelerator.save_state({str(tmp_path / "ckpt")!r}, async_save=True)
        # no wait_for_checkpoint(): exiting must not lose the checkpoint
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ckpt" / COMPLETE_MARKER).is_file()
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
