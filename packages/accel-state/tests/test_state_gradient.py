"""GradientState: defaults, plugin settings, weak dataloader references."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import pytest

from accel.state import GradientState


class Loader:
    def __init__(self, end_of_dataloader=False, remainder=0):
        self.end_of_dataloader = end_of_dataloader
        self.remainder = remainder


@dataclass
class Plugin:
    num_steps: int = 4
    adjust_scheduler: bool = True
    sync_with_dataloader: bool = False

    def to_kwargs(self):
        return {
            "num_steps": self.num_steps,
            "adjust_scheduler": self.adjust_scheduler,
            "sync_with_dataloader": self.sync_with_dataloader,
        }


def test_defaults():
    state = GradientState()
    assert state.initialized
    assert state.sync_gradients is True
    assert state.num_steps == 1
    assert state.adjust_scheduler is False
    assert state.sync_with_dataloader is True
    assert state.plugin_kwargs == {}
    assert state.dataloader_references == [None]
    assert state.active_dataloader is None
    assert state.in_dataloader is False
    assert state.end_of_dataloader is False
    assert state.remainder == -1
    assert state.is_xla_gradients_synced is False
    assert "Sync Gradients: True" in repr(state)


def test_shared_between_instances():
    first = GradientState()
    first._set_sync_gradients(False)
    assert GradientState().sync_gradients is False
    assert first.__dict__ is GradientState().__dict__


def test_plugin_kwargs_from_to_kwargs_and_updatable():
    state = GradientState(Plugin())
    assert state.num_steps == 4
    assert state.adjust_scheduler is True
    assert state.sync_with_dataloader is False
    # a plain GradientState() later keeps the settings
    assert GradientState().num_steps == 4
    # a different plugin later updates them
    assert GradientState(Plugin(num_steps=8)).num_steps == 8
    assert state.num_steps == 8


def test_partial_plugin_kwargs_fall_back_to_defaults():
    class Partial:
        def to_kwargs(self):
            return {"num_steps": 2}

    state = GradientState(Partial())
    assert (state.num_steps, state.adjust_scheduler, state.sync_with_dataloader) == (2, False, True)


def test_active_dataloader_and_its_flags():
    state = GradientState()
    outer = Loader(end_of_dataloader=False, remainder=0)
    inner = Loader(end_of_dataloader=True, remainder=3)
    state._add_dataloader(outer)
    assert state.active_dataloader is outer
    assert state.in_dataloader is True
    assert state.end_of_dataloader is False
    assert state.remainder == 0
    state._add_dataloader(inner)
    assert state.dataloader_references == [None, outer, inner]
    assert state.active_dataloader is inner
    assert state.end_of_dataloader is True
    assert state.remainder == 3
    inner.end_of_dataloader = False
    assert state.end_of_dataloader is False
    state._remove_dataloader(inner)
    assert state.active_dataloader is outer
    state._remove_dataloader(outer)
    assert state.dataloader_references == [None]
    assert state.remainder == -1


def test_dataloader_references_are_weak():
    state = GradientState()
    loader = Loader(end_of_dataloader=True, remainder=2)
    state._add_dataloader(loader)
    assert state.active_dataloader is loader
    del loader
    gc.collect()
    assert state.active_dataloader is None
    assert state.in_dataloader is False
    assert state.end_of_dataloader is False
    assert state.remainder == -1


def test_dataloader_references_setter_stores_weak_refs():
    state = GradientState()
    loader = Loader()
    state.dataloader_references = [None, loader]
    assert state.dataloader_references == [None, loader]
    assert all(r is None or r() is loader for r in state._dataloader_references_ref)


def test_is_xla_gradients_synced_setter_and_fsdp_env(monkeypatch):
    state = GradientState()
    state.is_xla_gradients_synced = True
    assert state.is_xla_gradients_synced is True
    state.is_xla_gradients_synced = False
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert state.is_xla_gradients_synced is True


def test_reset():
    state = GradientState(Plugin())
    GradientState._reset_state()
    assert GradientState._shared_state == {}
    assert state.initialized is False
    assert GradientState().num_steps == 1


@pytest.mark.parametrize("step", [0, 1])
def test_no_leak_between_tests(step):
    # run twice: whatever the first run changed must not be seen by the second
    assert GradientState._shared_state == {}
    GradientState(Plugin(num_steps=9))._set_sync_gradients(False)
