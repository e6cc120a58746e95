"""DeepSpeedConfig and filling "auto" values from what prepare() sees (no processes, no engine)."""

from __future__ import annotations

import pytest
import torch

from accel.deepspeed import DeepSpeedConfig, DeepSpeedPlugin, DummyOptim, DummyScheduler
from accel.deepspeed.autofill import batch_size_of, fill_from_prepare, hidden_size


def fill(plugin: DeepSpeedPlugin, **kwargs):
    options = {
        "model": torch.nn.Linear(2, 2),
        "optimizer": None,
        "scheduler": None,
        "micro_batch_size": 8,
        "batch_source": "the dataloader's batch_size (8)",
        "gradient_accumulation_steps": 2,
        "num_processes": 2,
    }
    options.update(kwargs)
    return fill_from_prepare(plugin, **options)


def test_dotted_access_and_auto_keys() -> None:
    config = DeepSpeedConfig({"a": {"b": "auto", "c": 1}, "d": "auto"})
    assert config.get_value("a.c") == 1 and config.get_value("a.x", 5) == 5
    assert config.auto_keys() == ["a.b", "d"]
    config.set_value("e.f.g", 3)
    assert config.config["e"] == {"f": {"g": 3}}
    with pytest.raises(ValueError) as error:
        config.check_resolved()
    assert "a.b" in str(error.value) and "d:" in str(error.value)


def test_batch_sizes_and_accumulation_are_filled() -> None:
    config = fill(DeepSpeedPlugin(zero_stage=2))
    assert config["train_micro_batch_size_per_gpu"] == 8
    assert config["train_batch_size"] == 32
    assert config["gradient_accumulation_steps"] == 2


def test_micro_batch_left_auto_without_a_dataloader_is_named() -> None:
    with pytest.raises(ValueError) as error:
        fill(DeepSpeedPlugin(), micro_batch_size=None, batch_source="no dataloader was prepared")
    message = str(error.value)
    assert "train_micro_batch_size_per_gpu" in message and "dataloader" in message


def test_micro_batch_derived_from_a_concrete_train_batch_size() -> None:
    config = fill(
        DeepSpeedPlugin(
            hf_ds_config={"train_batch_size": 64, "train_micro_batch_size_per_gpu": "auto"}
        ),
        micro_batch_size=None,
    )
    assert config["train_micro_batch_size_per_gpu"] == 16


def test_concrete_micro_batch_disagreeing_with_the_dataloader_is_refused() -> None:
    plugin = DeepSpeedPlugin(hf_ds_config={"train_micro_batch_size_per_gpu": 4})
    with pytest.raises(ValueError) as error:
        fill(plugin)
    assert "train_micro_batch_size_per_gpu: 4" in str(error.value)
    assert "batch_size (8)" in str(error.value)


def test_inconsistent_train_batch_size_is_refused() -> None:
    plugin = DeepSpeedPlugin(
        hf_ds_config={"train_batch_size": 100, "train_micro_batch_size_per_gpu": "auto"}
    )
    with pytest.raises(ValueError, match=r"train_batch_size"):
        fill(plugin)


def test_gradient_clipping_auto_defaults_to_one_or_the_plugin_value() -> None:
    assert (
        fill(DeepSpeedPlugin(hf_ds_config={"gradient_clipping": "auto"}))["gradient_clipping"]
        == 1.0
    )
    plugin = DeepSpeedPlugin(hf_ds_config={"gradient_clipping": "auto"}, gradient_clipping=0.3)
    assert fill(plugin)["gradient_clipping"] == 0.3


def test_dummy_optimizer_and_scheduler_fill_their_sections() -> None:
    model = torch.nn.Linear(2, 2)
    plugin = DeepSpeedPlugin(
        hf_ds_config={
            "optimizer": {
                "type": "AdamW",
                "params": {"lr": "auto", "weight_decay": "auto", "betas": "auto"},
            },
            "scheduler": {
                "type": "WarmupDecayLR",
                "params": {
                    "warmup_min_lr": "auto",
                    "warmup_max_lr": "auto",
                    "warmup_num_steps": "auto",
                    "total_num_steps": "auto",
                },
            },
        }
    )
    optimizer = DummyOptim(model.parameters(), lr=2e-4, weight_decay=0.1, betas=(0.9, 0.95))
    scheduler = DummyScheduler(optimizer, total_num_steps=1000, warmup_num_steps=50)
    config = fill(plugin, model=model, optimizer=optimizer, scheduler=scheduler)
    assert config["optimizer"]["params"] == {"lr": 2e-4, "weight_decay": 0.1, "betas": (0.9, 0.95)}
    assert config["scheduler"]["params"] == {
        "warmup_min_lr": 0,
        "warmup_max_lr": 2e-4,
        "warmup_num_steps": 50,
        "total_num_steps": 1000,
    }
    assert "zero_allow_untested_optimizer" not in config


def test_dummy_scheduler_without_total_steps_names_the_key() -> None:
    plugin = DeepSpeedPlugin(
        hf_ds_config={
            "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
            "scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": "auto"}},
        }
    )
    optimizer = DummyOptim([], lr=1e-3)
    with pytest.raises(ValueError, match=r"scheduler.params.total_num_steps: DummyScheduler"):
        fill(plugin, optimizer=optimizer, scheduler=DummyScheduler(optimizer))


def test_optimizer_in_config_and_in_code_is_refused() -> None:
    model = torch.nn.Linear(2, 2)
    plugin = DeepSpeedPlugin(hf_ds_config={"optimizer": {"type": "AdamW", "params": {}}})
    with pytest.raises(ValueError, match=r"DummyOptim"):
        fill(plugin, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_dummy_optimizer_without_a_config_section_is_refused() -> None:
    with pytest.raises(ValueError, match='has no "optimizer" section'):
        fill(DeepSpeedPlugin(), optimizer=DummyOptim([], lr=1e-3))


def test_torch_optimizer_is_allowed_under_zero() -> None:
    model = torch.nn.Linear(2, 2)
    config = fill(DeepSpeedPlugin(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert config["zero_allow_untested_optimizer"] is True


def test_hidden_size_fills_zero3_bucket_sizes() -> None:
    class Config:
        hidden_size = 64

    model = torch.nn.Linear(2, 2)
    model.config = Config()
    assert hidden_size(model) == 64
    plugin = DeepSpeedPlugin(
        hf_ds_config={
            "zero_optimization": {
                "stage": 3,
                "reduce_bucket_size": "auto",
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
            }
        }
    )
    zero = fill(plugin, model=model)["zero_optimization"]
    assert zero["reduce_bucket_size"] == 4096
    assert zero["stage3_prefetch_bucket_size"] == 3686
    assert zero["stage3_param_persistence_threshold"] == 640


def test_bucket_sizes_without_hidden_size_are_named() -> None:
    plugin = DeepSpeedPlugin(
        hf_ds_config={"zero_optimization": {"stage": 3, "reduce_bucket_size": "auto"}}
    )
    with pytest.raises(ValueError, match=r"zero_optimization.reduce_bucket_size"):
        fill(plugin)


def test_batch_size_of_a_loader() -> None:
    loader = torch.utils.data.DataLoader(list(range(16)), batch_size=8)
    assert batch_size_of(loader, split_batches=False, num_processes=2) == 8
    assert batch_size_of(loader, split_batches=True, num_processes=2) == 4


def _config_with_optimizer_and_scheduler(lr: object, warmup: object) -> dict:
    return {
        "optimizer": {"type": "AdamW", "params": {"lr": lr, "weight_decay": 0.01}},
        "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": warmup}},
    }


def test_dummy_defaults_leave_the_config_values_alone() -> None:
    """transformers' Trainer passes ``DummyOptim(params)`` and ``DummyScheduler(optimizer)``:
    the config's concrete numbers win, as in Accelerate; the defaults fill only "auto"."""
    params = list(torch.nn.Linear(2, 2).parameters())
    optimizer = DummyOptim(params)
    config = fill(
        DeepSpeedPlugin(hf_ds_config=_config_with_optimizer_and_scheduler(5e-5, 10)),
        optimizer=optimizer,
        scheduler=DummyScheduler(optimizer),
    )
    assert config["optimizer"]["params"] == {"lr": 5e-5, "weight_decay": 0.01}
    assert config["scheduler"]["params"]["warmup_num_steps"] == 10
    optimizer = DummyOptim(params)
    config = fill(
        DeepSpeedPlugin(hf_ds_config=_config_with_optimizer_and_scheduler("auto", "auto")),
        optimizer=optimizer,
        scheduler=DummyScheduler(optimizer),
    )
    assert config["optimizer"]["params"]["lr"] == 0.001
    assert config["scheduler"]["params"]["warmup_num_steps"] == 0


def test_explicit_dummy_values_disagreeing_with_the_config_are_refused() -> None:
    optimizer = DummyOptim(list(torch.nn.Linear(2, 2).parameters()), lr=0.1)
    with pytest.raises(ValueError) as error:
        fill(
            DeepSpeedPlugin(hf_ds_config=_config_with_optimizer_and_scheduler(5e-5, 10)),
            optimizer=optimizer,
            scheduler=DummyScheduler(optimizer, warmup_num_steps=3),
        )
    message = str(error.value)
    assert "optimizer.params.lr: 5e-05" in message and "DummyOptim(lr=...)" in message
    assert "scheduler.params.warmup_num_steps: 10" in message
