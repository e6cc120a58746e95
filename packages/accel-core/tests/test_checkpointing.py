"""``save_state`` / ``load_state`` in one process: round trips, naming, crash safety, safety."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import accel.state
from accel.core import Accelerator, ProjectConfiguration, set_seed
from accel.core.checkpoint import COMPLETE_MARKER, UnsafeCheckpointError, latest_checkpoint


class Counter:
    """A custom object with a state dict."""

    def __init__(self) -> None:
        self.count = 0

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.count = state["count"]


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 4, generator=generator)
    return TensorDataset(inputs, inputs.sum(dim=1, keepdim=True))


def _setup(**accelerator_kwargs):
    accel.state.reset_state()
    set_seed(1)
    accelerator = Accelerator(cpu=True, **accelerator_kwargs)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    loader = DataLoader(_data(), batch_size=4)
    counter = Counter()
    accelerator.register_for_checkpointing(counter)
    model, optimizer, scheduler, loader = accelerator.prepare(model, optimizer, scheduler, loader)
    return accelerator, model, optimizer, scheduler, loader, counter


def _train(accelerator, model, optimizer, scheduler, batches, counter) -> list[float]:
    losses = []
    for inputs, targets in batches:
        loss = nn.functional.mse_loss(model(inputs), targets)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        counter.count += 1
        losses.append(loss.item() + random.random() + float(np.random.rand()))
    return losses


def _batches(loader, start: int, stop: int) -> list:
    return [b for i, b in enumerate(loader) if start <= i < stop]


def test_round_trip_continues_training_identically(tmp_path) -> None:
    accelerator, model, optimizer, scheduler, loader, counter = _setup()
    batches = list(loader)
    _train(accelerator, model, optimizer, scheduler, batches[:3], counter)
    accelerator.save_state(tmp_path / "ckpt")
    expected = _train(accelerator, model, optimizer, scheduler, batches[3:6], counter)
    expected_weights = {k: v.clone() for k, v in model.state_dict().items()}

    accelerator, model, optimizer, scheduler, loader, counter = _setup()
    accelerator.load_state(tmp_path / "ckpt")
    assert counter.count == 3
    assert scheduler.scheduler.last_epoch == 3
    got = _train(accelerator, model, optimizer, scheduler, batches[3:6], counter)
    assert got == expected
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected_weights[key], rtol=0, atol=0)


def test_folder_has_accelerate_layout(tmp_path) -> None:
    accelerator, *_ = _setup()
    folder = accelerator.save_state(tmp_path / "ckpt")
    assert sorted(os.listdir(folder)) == sorted(
        [
            "model.safetensors",
            "optimizer.bin",
            "scheduler.bin",
            "random_states_0.pkl",
            "custom_checkpoint_0.pkl",
            COMPLETE_MARKER,
        ]
    )
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    accelerator.save_state(tmp_path / "bin", safe_serialization=False)
    assert os.path.isfile(tmp_path / "bin" / "pytorch_model.bin")
    accelerator.load_state(tmp_path / "bin")


def test_saving_over_an_existing_folder_replaces_it(tmp_path) -> None:
    accelerator, *_ = _setup()
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "stale.txt").write_text("old")
    accelerator.save_state(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_automatic_naming_and_total_limit(tmp_path) -> None:
    config = ProjectConfiguration(
        project_dir=str(tmp_path), automatic_checkpoint_naming=True, total_limit=2
    )
    accelerator, model, *_ = _setup(project_config=config)
    root = tmp_path / "checkpoints"
    for i in range(4):
        with torch.no_grad():
            model[0].bias.fill_(float(i))
        folder = accelerator.save_state()
        assert folder == str(root / f"checkpoint_{i}")
        assert accelerator.save_iteration == i + 1
    assert sorted(os.listdir(root)) == ["checkpoint_2", "checkpoint_3"]
    with torch.no_grad():
        model[0].bias.zero_()
    assert accelerator.load_state() == str(root / "checkpoint_3")
    assert model[0].bias.eq(3.0).all()


def test_total_limit_keeps_incomplete_folders_and_never_counts_them(tmp_path) -> None:
    config = ProjectConfiguration(
        project_dir=str(tmp_path), automatic_checkpoint_naming=True, total_limit=1
    )
    accelerator, *_ = _setup(project_config=config)
    root = tmp_path / "checkpoints"
    (root / "checkpoint_0").mkdir(parents=True)  # a folder some other tool wrote
    accelerator.project_configuration.iteration = 1
    accelerator.save_state()
    accelerator.save_state()
    assert sorted(os.listdir(root)) == ["checkpoint_0", "checkpoint_2"]


def test_pruning_renames_before_deleting_and_finishes_a_cut_delete(tmp_path) -> None:
    config = ProjectConfiguration(
        project_dir=str(tmp_path), automatic_checkpoint_naming=True, total_limit=1
    )
    accelerator, *_ = _setup(project_config=config)
    root = tmp_path / "checkpoints"
    leftover = root / ".checkpoint_7.deleting"  # a prune killed mid-delete
    leftover.mkdir(parents=True)
    (leftover / "optimizer.bin").write_bytes(b"half")
    accelerator.save_state()
    accelerator.save_state()
    assert sorted(os.listdir(root)) == ["checkpoint_1"]


def test_existing_automatic_checkpoint_is_not_overwritten(tmp_path) -> None:
    config = ProjectConfiguration(project_dir=str(tmp_path), automatic_checkpoint_naming=True)
    accelerator, *_ = _setup(project_config=config)
    accelerator.save_state()
    accelerator.project_configuration.iteration = 0
    with pytest.raises(ValueError, match="checkpoint_0"):
        accelerator.save_state()


def test_incomplete_checkpoints_are_ignored(tmp_path) -> None:
    config = ProjectConfiguration(project_dir=str(tmp_path), automatic_checkpoint_naming=True)
    accelerator, model, *_ = _setup(project_config=config)
    with torch.no_grad():
        model[0].bias.fill_(1.0)
    accelerator.save_state()
    with torch.no_grad():
        model[0].bias.fill_(2.0)
    accelerator.save_state()
    root = tmp_path / "checkpoints"
    # Crash after the rename but before... cannot happen; simulate a folder without marker
    # and a temporary folder left by a crash mid-write.
    os.remove(root / "checkpoint_1" / COMPLETE_MARKER)
    (root / ".checkpoint_2.partial").mkdir()
    (root / ".checkpoint_2.partial" / "model.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(root) == str(root / "checkpoint_0")
    with torch.no_grad():
        model[0].bias.zero_()
    assert accelerator.load_state() == str(root / "checkpoint_0")
    assert model[0].bias.eq(1.0).all()
    # The next save goes to a fresh number and cleans its own stale temporary folder.
    accelerator.project_configuration.iteration = 2
    accelerator.save_state()
    assert sorted(os.listdir(root)) == ["checkpoint_0", "checkpoint_1", "checkpoint_2"]


def test_load_without_any_complete_checkpoint_says_why(tmp_path) -> None:
    config = ProjectConfiguration(project_dir=str(tmp_path), automatic_checkpoint_naming=True)
    accelerator, *_ = _setup(project_config=config)
    (tmp_path / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="completion marker"):
        accelerator.load_state()
    accelerator, *_ = _setup()
    with pytest.raises(ValueError, match="input_dir"):
        accelerator.load_state()
    with pytest.raises(ValueError, match="does not exist"):
        accelerator.load_state(tmp_path / "nope")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_tampered_pickle_is_refused_without_running_it(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    accelerator, *_ = _setup()
    folder = accelerator.save_state(tmp_path / "ckpt")
    with open(os.path.join(folder, "random_states_0.pkl"), "wb") as handle:
        pickle.dump({"step": 0, "x": _Payload()}, handle)
    with pytest.raises(UnsafeCheckpointError, match=r"random_states_0\.pkl"):
        accelerator.load_state(folder)
    # Also when saved through torch.save.
    torch.save({"x": _Payload()}, os.path.join(folder, "custom_checkpoint_0.pkl"))
    os.remove(os.path.join(folder, "random_states_0.pkl"))
    with pytest.raises(UnsafeCheckpointError, match=r"custom_checkpoint_0\.pkl"):
        accelerator.load_state(folder)
    assert not (tmp_path / "PWNED").exists()


def test_weights_only_false_is_refused(tmp_path) -> None:
    accelerator, *_ = _setup()
    folder = accelerator.save_state(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="weights_only"):
        accelerator.load_state(folder, load_kwargs={"weights_only": False})


def test_register_for_checkpointing_names_bad_objects() -> None:
    accelerator = Accelerator(cpu=True)
    with pytest.raises(ValueError, match="NoState"):

        class NoState:
            pass

        accelerator.register_for_checkpointing(Counter(), NoState())
    assert accelerator._custom_objects == []


def test_custom_object_count_mismatch(tmp_path) -> None:
    accelerator, *_ = _setup()
    folder = accelerator.save_state(tmp_path / "ckpt")
    accelerator.register_for_checkpointing(Counter())
    with pytest.raises(RuntimeError, match="1 custom objects"):
        accelerator.load_state(folder)


def test_hooks_run_and_can_be_removed(tmp_path) -> None:
    accelerator, model, *_ = _setup()
    calls = []

    def save_hook(models, weights, output_dir):
        calls.append(("save", len(models), len(weights), os.path.isdir(output_dir)))
        with open(os.path.join(output_dir, "extra.txt"), "w") as handle:
            handle.write("hi")

    def load_hook(models, input_dir):
        calls.append(("load", len(models), os.path.isfile(os.path.join(input_dir, "extra.txt"))))
        models.pop()  # loaded by the hook itself

    save_handle = accelerator.register_save_state_pre_hook(save_hook)
    load_handle = accelerator.register_load_state_pre_hook(load_hook)
    folder = accelerator.save_state(tmp_path / "ckpt")
    with torch.no_grad():
        model[0].bias.fill_(5.0)
    accelerator.load_state(folder)
    assert model[0].bias.eq(5.0).all()  # the hook took the model out of the list
    assert calls == [("save", 1, 1, True), ("load", 1, True)]
    save_handle.remove()
    load_handle.remove()
    accelerator.save_state(tmp_path / "ckpt2")
    accelerator.load_state(tmp_path / "ckpt2")
    assert len(calls) == 2


def _loop(accelerator, model, optimizer, scheduler, loader, counter, epochs, save=None):
    """Train over ``epochs`` passes; ``save=(pass, step, path)`` saves after that step."""
    losses = []
    for pass_index in range(epochs):
        for step, batch in enumerate(loader):
            losses.extend(_train(accelerator, model, optimizer, scheduler, [batch], counter))
            if save is not None and (pass_index, step) == save[:2]:
                accelerator.save_state(save[2])
                losses.append("saved")
    return losses


@pytest.mark.parametrize("seedable", [False, True])
def test_dataloader_resumes_at_the_next_unseen_batch(tmp_path, seedable) -> None:
    from accel.core import DataLoaderConfiguration

    def setup():
        config = DataLoaderConfiguration(use_seedable_sampler=seedable)
        accelerator, model, optimizer, scheduler, _, counter = _setup(dataloader_config=config)
        loader = DataLoader(_data(), batch_size=4, shuffle=True)
        return accelerator, model, optimizer, scheduler, accelerator.prepare(loader), counter

    objects = setup()
    full = _loop(*objects, epochs=3, save=(1, 2, tmp_path / "ckpt"))
    cut = full.index("saved")
    expected = full[cut + 1 :]

    objects = setup()
    accelerator, loader = objects[0], objects[4]
    accelerator.load_state(tmp_path / "ckpt")
    assert (loader._epoch, loader._resume.seen) == (1, 3)
    # The rest of pass 1 (5 batches), then pass 2 in full.
    resumed = _loop(*objects, epochs=2)
    assert len(resumed) == 5 + 8
    assert resumed == expected


def test_position_survives_load_then_save_and_resets_after_a_full_pass(tmp_path) -> None:
    accelerator, *_, loader, _ = _setup()
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    folder = accelerator.save_state(tmp_path / "mid")
    accelerator, _, _, _, loader, _ = _setup()
    accelerator.load_state(folder)
    accelerator.save_state(tmp_path / "again")  # not iterated in between
    accelerator, _, _, _, loader, _ = _setup()
    accelerator.load_state(tmp_path / "again")
    assert loader._resume.seen == 3
    assert len(list(loader)) == 8 - 3
    assert len(list(loader)) == 8  # only the first pass resumes
    assert loader._epoch == 2
    accelerator.save_state(tmp_path / "end")
    accelerator, _, _, _, loader, _ = _setup()
    accelerator.load_state(tmp_path / "end")
    assert loader._epoch == 2
    assert loader._resume is None


def test_skip_first_batches_after_load_takes_over(tmp_path) -> None:
    accelerator, *_, loader, _ = _setup()
    accelerator.step = 7
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    folder = accelerator.save_state(tmp_path / "ckpt")
    accelerator, _, _, _, loader, _ = _setup()
    accelerator.load_state(folder)
    assert accelerator.step == 7
    # The Accelerate way of resuming: skip explicitly. The original loader must then not
    # skip again on its next pass.
    skipped = accelerator.skip_first_batches(loader, 3)
    first = next(iter(skipped))[0]
    torch.testing.assert_close(first, _data().tensors[0][12:16])
    assert len(list(loader)) == 8


def test_save_inside_an_accumulation_window_restores_the_gradients(tmp_path) -> None:
    """Saved after 3 batches of a window of 4: the resumed window steps on all 4 batches."""

    def run(resume_from=None, save_to=None):
        accelerator, model, optimizer, _, loader, _ = _setup(gradient_accumulation_steps=4)
        if resume_from is not None:
            accelerator.load_state(resume_from)
        losses = []
        for inputs, targets in loader:
            with accelerator.accumulate(model):
                loss = nn.functional.mse_loss(model(inputs), targets)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            if save_to is not None and len(losses) == 3:
                accelerator.save_state(save_to)
        return losses, [p.detach().clone() for p in model.parameters()]

    full_losses, full_weights = run(save_to=tmp_path / "ckpt")
    files = sorted(os.listdir(tmp_path / "ckpt"))
    assert "accel_gradients_0.safetensors" in files
    losses, weights = run(resume_from=tmp_path / "ckpt")
    assert losses == full_losses[3:]
    for got, want in zip(weights, full_weights):
        assert torch.equal(got, want)


def test_tied_weights_round_trip(tmp_path) -> None:
    accel.state.reset_state()
    accelerator = Accelerator(cpu=True)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight
    model = accelerator.prepare(model)
    folder = accelerator.save_state(tmp_path / "ckpt")
    with torch.no_grad():
        model[0].weight.zero_()
    accelerator.load_state(folder)
    assert model[0].weight.abs().sum() > 0
    assert model[1].weight is model[0].weight


def test_accelerate_ddp_checkpoint_with_module_prefix_loads(tmp_path) -> None:
    from safetensors.torch import save_file

    accelerator, model, *_ = _setup()
    folder = accelerator.save_state(tmp_path / "ckpt")
    weights = {f"module.{k}": torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    save_file(weights, os.path.join(folder, "model.safetensors"))
    accelerator.load_state(folder)
    assert all(v.eq(0.5).all() for v in model.state_dict().values())


def test_mismatched_weights_are_named(tmp_path) -> None:
    from safetensors.torch import save_file

    accelerator, *_ = _setup()
    folder = accelerator.save_state(tmp_path / "ckpt")
    save_file({"other.weight": torch.zeros(1)}, os.path.join(folder, "model.safetensors"))
    with pytest.raises(RuntimeError, match=r"other\.weight"):
        accelerator.load_state(folder)


def test_megatron_lm_is_refused_clearly(tmp_path, monkeypatch) -> None:
    from accel.core import DistributedType

    accelerator, *_ = _setup()
    monkeypatch.setattr(
        Accelerator, "distributed_type", property(lambda self: DistributedType.MEGATRON_LM)
    )
    with pytest.raises(ValueError, match="MEGATRON_LM"):
        accelerator.save_state(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="MEGATRON_LM"):
        accelerator.load_state(tmp_path)


def test_accelerate_fsdp_model_file_name_is_read(tmp_path) -> None:
    accelerator, model, optimizer, scheduler, loader, counter = _setup()
    _train(accelerator, model, optimizer, scheduler, list(loader)[:2], counter)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    folder = accelerator.save_state(tmp_path / "ckpt", safe_serialization=False)
    os.rename(
        os.path.join(folder, "pytorch_model.bin"), os.path.join(folder, "pytorch_model_fsdp.bin")
    )

    accelerator, model, optimizer, scheduler, loader, counter = _setup()
    accelerator.load_state(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_save_model_keywords_the_strategy_would_ignore_are_refused(tmp_path) -> None:
    accelerator, *_ = _setup()
    with pytest.raises(TypeError, match=r"\['client_state'\].*'single' strategy.*DeepSpeed"):
        accelerator.save_state(tmp_path / "ckpt", client_state={"epoch": 3})
    assert not os.listdir(tmp_path), "nothing is written before the keywords are checked"
