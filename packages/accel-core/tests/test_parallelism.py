"""ParallelismConfig on one process: mesh layout, handlers, sources, and the Accelerator's
refusals (multi-process behaviour is in tests-integration/test_ndp_distributed.py)."""

from __future__ import annotations

import pytest
import torch

from accel import core
from accel.core.device_mesh import check_job
from accel.core.parallel_handlers import (
    DeepSpeedSequenceParallelConfig,
    TorchContextParallelConfig,
    TorchTensorParallelConfig,
    TorchTensorParallelPlugin,
)
from accel.core.parallelism_config import ParallelismConfig, resolve_parallelism_options
from accel.core.tensor_parallel import resolve_tp_plan


def test_mesh_layout_puts_tensor_parallel_ranks_last() -> None:
    config = ParallelismConfig(dp_replicate_size=2, dp_shard_size=2, tp_size=2)
    assert config._get_mesh() == (("dp_replicate", "dp_shard", "tp"), (2, 2, 2))
    assert config.fsdp_dim_names == ["dp_replicate", "dp_shard_cp"]
    assert isinstance(config.tp_handler, TorchTensorParallelConfig)
    assert ParallelismConfig()._get_mesh() == ()
    assert ParallelismConfig().build_device_mesh("cpu") is None


def test_handlers_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="async tensor parallelism"):
        TorchTensorParallelConfig(enable_async_tp=True)
    monkeypatch.setenv("PARALLELISM_CONFIG_CP_COMM_STRATEGY", "ring")
    with pytest.raises(ValueError, match="PARALLELISM_CONFIG_CP_COMM_STRATEGY"):
        TorchContextParallelConfig()
    monkeypatch.setenv("PARALLELISM_CONFIG_CP_COMM_STRATEGY", "alltoall")
    assert ParallelismConfig(cp_size=2).cp_handler.cp_comm_strategy == "alltoall"
    with pytest.raises(TypeError, match="TorchContextParallelConfig"):
        ParallelismConfig(cp_size=2, cp_handler=TorchTensorParallelConfig())


def test_sources_of_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_parallelism_options() is None
    config = resolve_parallelism_options(torch_tp_plugin=TorchTensorParallelPlugin(tp_size=2))
    assert config.tp_size == 2
    monkeypatch.setenv("ACCELERATE_USE_PARALLELISM_CONFIG", "true")
    monkeypatch.setenv("ACCEL_PARALLELISM_CONFIG_DP_SHARD_SIZE", "2")
    assert resolve_parallelism_options().dp_shard_size == 2
    monkeypatch.setenv("ACCELERATE_USE_PARALLELISM_CONFIG", "ture")
    with pytest.raises(ValueError, match="ACCELERATE_USE_PARALLELISM_CONFIG"):
        resolve_parallelism_options()
    monkeypatch.delenv("ACCELERATE_USE_PARALLELISM_CONFIG")
    with pytest.raises(ValueError, match="give the size once"):
        resolve_parallelism_options(
            ParallelismConfig(tp_size=1), TorchTensorParallelPlugin(tp_size=2)
        )
    with pytest.raises(TypeError, match="TorchTensorParallelPlugin"):
        resolve_parallelism_options(torch_tp_plugin=object())


def test_every_invalid_job_gets_one_clear_error() -> None:
    cases = [
        (ParallelismConfig(tp_size=2), 4, "cpu", "MULTI_CPU", False, "multiply to 2"),
        (ParallelismConfig(cp_size=2), 2, "cpu", "FSDP", False, "needs CUDA"),
        (
            ParallelismConfig(cp_size=2),
            2,
            "cpu",
            "FSDP",
            False,
            "_scaled_dot_product_flash_attention_for_cpu.default does not have a sharding strategy",
        ),
        (ParallelismConfig(sp_size=2), 2, "cuda", "MULTI_GPU", False, "Ulysses.*DeepSpeed"),
        (ParallelismConfig(sp_size=2), 3, "cpu", "DEEPSPEED", False, "multiply to 2"),
        (ParallelismConfig(sp_size=2, tp_size=2), 4, "cpu", "DEEPSPEED", False, "DeepSpeed"),
        (ParallelismConfig(tp_size=2), 2, "cpu", "DEEPSPEED", False, "DeepSpeed"),
        (ParallelismConfig(tp_size=2), 2, "cpu", "FSDP", True, "nothing|no dimension"),
    ]
    for config, world, device, kind, fsdp, message in cases:
        with pytest.raises(ValueError, match=message):
            check_job(config, world, device, kind, fsdp)
    plain = ParallelismConfig()
    check_job(plain, 2, "cpu", "MULTI_CPU", False)
    assert plain.dp_replicate_size == 2  # all sizes 1 on 2 processes: plain data parallel


def test_tp_plan_comes_from_the_user_or_the_model() -> None:
    with pytest.raises(ValueError, match="needs a plan for Linear"):
        resolve_tp_plan(torch.nn.Linear(2, 2), None)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    model.tp_plan = {"0": "colwise"}
    assert resolve_tp_plan(model, None) == {"0": "colwise"}
    assert resolve_tp_plan(model, {"0": "rowwise"}) == {"0": "rowwise"}


def test_single_process_accelerator_reports_ranks() -> None:
    accelerator = core.Accelerator(parallelism_config=ParallelismConfig())
    assert accelerator.torch_device_mesh is None
    assert (accelerator.data_parallel_rank, accelerator.tensor_parallel_rank) == (0, 0)
    assert accelerator.context_parallel_rank == 0
    assert accelerator.is_composable_parallelism_enabled is False
    with accelerator.maybe_context_parallel():
        pass


def test_sequence_parallel_sizes_and_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ParallelismConfig(sp_size=2)
    assert isinstance(config.sp_handler, DeepSpeedSequenceParallelConfig)
    assert config.build_device_mesh("cpu") is None  # DeepSpeed builds the SP groups
    check_job(config, 4, "cpu", "DEEPSPEED", False)
    assert (config.dp_replicate_size, config.total_size) == (2, 4)  # leftover ranks: data
    with pytest.raises(TypeError, match="sp_handler must be a DeepSpeedSequenceParallelConfig"):
        ParallelismConfig(sp_size=2, sp_handler=TorchContextParallelConfig())
    with pytest.raises(ValueError, match=r"'eager'.*cannot run under sequence parallelism"):
        DeepSpeedSequenceParallelConfig(sp_attn_implementation="eager")
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SEQ_LENGTH_IS_VARIABLE", "false")
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SEQ_LENGTH", "256")
    monkeypatch.setenv("ACCEL_PARALLELISM_CONFIG_SP_ATTN_IMPLEMENTATION", "sdpa")
    handler = DeepSpeedSequenceParallelConfig()
    assert (handler.sp_seq_length_is_variable, handler.sp_seq_length) == (False, 256)
    assert handler.sp_attn_implementation == "sdpa"
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SEQ_LENGTH", "None")  # accelerate launch, unset
    with pytest.raises(ValueError, match="needs sp_seq_length"):
        DeepSpeedSequenceParallelConfig()
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SEQ_LENGTH", "long")
    with pytest.raises(ValueError, match="PARALLELISM_CONFIG_SP_SEQ_LENGTH"):
        DeepSpeedSequenceParallelConfig()
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_BACKEND", "ring")
    with pytest.raises(ValueError, match=r"sp_backend='ring'.*PARALLELISM_CONFIG_SP_BACKEND"):
        ParallelismConfig()


def test_dtensor_helpers() -> None:
    model = torch.nn.Linear(2, 2)
    assert core.model_has_dtensor(model) is False
    assert core.get_model_tp_size(model) is None
    model.tp_size = 4
    assert core.get_model_tp_size(model) == 4
