"""accel-core's Accelerate-named helpers: unwrapping, logging, progress, ParallelismConfig,
FSDP checkpoint functions (single process; the 2-process FSDP path is in tests-integration)."""

from __future__ import annotations

import doctest
import importlib
import logging
import os
import sys

import pytest
import torch

import accel.core as core
from accel.core.checkpoint import fsdp as fsdp_checkpoint
from accel.core.model_unwrap import (
    extract_model_from_parallel,
    get_module_class_from_name,
    is_peft_model,
)
from accel.core.parallelism_config import ParallelismConfig


@pytest.mark.parametrize(
    "module",
    ["model_unwrap", "process_logging", "progress", "parallelism_config", "checkpoint.fsdp"],
)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"accel.core.{module}")
    result = doctest.testmod(mod, raise_on_error=False, verbose=False)
    assert result.failed == 0 and result.attempted > 0, result


def test_extract_model_from_parallel_unwraps_nested_wrappers() -> None:
    inner = torch.nn.Sequential(torch.nn.Linear(2, 2))
    wrapped = torch.nn.DataParallel(torch.nn.DataParallel(inner))
    assert extract_model_from_parallel(wrapped) is inner
    outer = torch.nn.Sequential(torch.nn.DataParallel(torch.nn.Linear(2, 2)))
    assert isinstance(extract_model_from_parallel(outer, recursive=True)[0], torch.nn.Linear)
    assert is_peft_model(inner) is False
    assert get_module_class_from_name(wrapped, "Linear") is torch.nn.Linear
    assert get_module_class_from_name(inner, "Conv2d") is None


def test_get_logger_main_process_only_and_level(caplog: pytest.LogCaptureFixture) -> None:
    core.PartialState()
    logger = core.get_logger("accel.test.compat", log_level="INFO")
    with caplog.at_level(logging.INFO, logger="accel.test.compat"):
        logger.info("once", main_process_only=True)
        logger.info("all", main_process_only=False)
        logger.info("ordered", in_order=True)
        logger.warning_once("twice?")
        logger.warning_once("twice?")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["[RANK 0] once", "[RANK 0] all", "[RANK 0] ordered", "[RANK 0] twice?"]
    assert caplog.records[0].filename == os.path.basename(__file__)
    with pytest.raises(ValueError, match="log_level='LOUD'"):
        core.get_logger("accel.test.compat", log_level="LOUD")


def test_tqdm_is_shown_on_the_main_process_only() -> None:
    core.PartialState()
    bar = core.tqdm(range(3))
    assert bar.disable is False
    assert list(bar) == [0, 1, 2]
    with pytest.raises(ValueError, match="main_process_only=True"):
        core.tqdm(True, range(3))


def test_parallelism_config_reads_environment_and_refuses_bad_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARALLELISM_CONFIG_DP_SHARD_SIZE", "2")
    config = ParallelismConfig(tp_size=2)
    assert (config.dp_shard_size, config.tp_size, config.total_size) == (2, 2, 4)
    assert config.fsdp_dim_names == ["dp_shard_cp"]
    monkeypatch.setenv("PARALLELISM_CONFIG_CP_SIZE", "zero")
    with pytest.raises(ValueError, match="PARALLELISM_CONFIG_CP_SIZE"):
        ParallelismConfig()
    monkeypatch.delenv("PARALLELISM_CONFIG_CP_SIZE")
    with pytest.raises(ValueError, match="cp_backend='ring'"):
        ParallelismConfig(cp_backend="ring")
    with pytest.raises(ValueError, match="tp_size=0"):
        ParallelismConfig(tp_size=0)
    with pytest.raises(ValueError, match="cannot both"):
        ParallelismConfig(cp_size=2, sp_size=2)


@pytest.mark.parametrize("layout", ["FULL_STATE_DICT", "SHARDED_STATE_DICT"])
def test_fsdp_checkpoint_round_trip_in_accelerate_layout(tmp_path, layout: str) -> None:
    accelerator = core.Accelerator()
    plugin = core.FullyShardedDataParallelPlugin(state_dict_type=layout)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    fsdp_checkpoint.save_fsdp_model(plugin, accelerator, model, tmp_path, model_index=1)
    fsdp_checkpoint.save_fsdp_optimizer(plugin, accelerator, optimizer, model, tmp_path)
    expected = (
        {"pytorch_model_fsdp_1.bin", "optimizer.bin"}
        if layout == "FULL_STATE_DICT"
        else {"pytorch_model_fsdp_1", "optimizer_0"}
    )
    assert set(os.listdir(tmp_path)) == expected
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    fsdp_checkpoint.load_fsdp_model(plugin, accelerator, fresh, tmp_path, model_index=1)
    fsdp_checkpoint.load_fsdp_optimizer(plugin, accelerator, fresh_opt, fresh, tmp_path)
    assert torch.equal(fresh.weight, model.weight)
    state, fresh_state = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert torch.equal(state[0]["exp_avg"], fresh_state[0]["exp_avg"])
    with pytest.raises(FileNotFoundError, match="pytorch_model_fsdp_2"):
        fsdp_checkpoint.load_fsdp_model(
            core.FullyShardedDataParallelPlugin(), accelerator, fresh, tmp_path, model_index=2
        )
    with pytest.raises(ValueError, match="adapter_only=True needs a PEFT model"):
        fsdp_checkpoint.save_fsdp_model(plugin, accelerator, model, tmp_path, adapter_only=True)


def test_checkpoint_names_match_accelerate() -> None:
    assert (core.MODEL_NAME, core.OPTIMIZER_NAME, core.SCHEDULER_NAME) == (
        "pytorch_model",
        "optimizer",
        "scheduler",
    )
    assert (core.SCALER_NAME, core.RNG_STATE_NAME) == ("scaler.pt", "random_states")
    assert "TRANSFORMER_BASED_WRAP" in core.FSDP_AUTO_WRAP_POLICY
    assert core.FSDP_SHARDING_STRATEGY[0] == "FULL_SHARD"


class Custom:
    """A class torch.load(weights_only=True) refuses to unpickle."""


def test_load_is_weights_only_by_default(tmp_path) -> None:
    path = tmp_path / "obj.pt"
    torch.save({"c": Custom()}, path)
    with pytest.raises(Exception, match="weights_only"):
        core.load(path)
    assert isinstance(core.load(path, weights_only=False)["c"], Custom)
    assert core.is_compiled_module(torch.compile(torch.nn.Linear(2, 2))) is True
    assert core.WEIGHTS_PATTERN_NAME.format(suffix="-00001-of-00002") == (
        "pytorch_model-00001-of-00002.bin"
    )


def test_accelerator_refuses_parallelism_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="multiply to 4, but the job runs 1 processes"):
        core.Accelerator(parallelism_config=ParallelismConfig(tp_size=2, dp_shard_size=2))
    with pytest.raises(ValueError, match="megatron_lm_plugin"):
        core.Accelerator(megatron_lm_plugin=object())
    with pytest.raises(TypeError, match="dict"):
        core.Accelerator(parallelism_config={"tp_size": 2})


def test_is_compiled_module_does_not_import_dynamo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking at a plain module leaves ``torch._dynamo`` unimported (its import costs seconds)."""
    for name in [name for name in sys.modules if name.startswith("torch._dynamo")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(torch, "_dynamo", raising=False)
    assert core.is_compiled_module(torch.nn.Linear(2, 2)) is False
    assert "torch._dynamo" not in sys.modules
