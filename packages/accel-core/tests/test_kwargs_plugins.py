from __future__ import annotations

import dataclasses
import enum
import functools
import os
import warnings

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, StateDictType

from accel.core.kwargs import (
    AutocastKwargs,
    DDPCommunicationHookType,
    DistributedDataParallelKwargs,
    FP8RecipeKwargs,
    GradScalerKwargs,
    InitProcessGroupKwargs,
)
from accel.core.plugins import (
    DataLoaderConfiguration,
    GradientAccumulationPlugin,
    ProjectConfiguration,
    TorchDynamoPlugin,
)
from accel.core.strategies.fsdp_plugin import FullyShardedDataParallelPlugin
from accel.launch.spawn import free_port
from accel.state.enums import DynamoBackend
from accel.state.environment import clear_environment

_PREFIXES = ("ACCEL_", "ACCELERATE_", "FSDP_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Every test starts without launcher variables that could leak from the outer shell."""
    for key in list(os.environ):
        if key.startswith(_PREFIXES):
            monkeypatch.delenv(key)


def _norm(value):
    if isinstance(value, enum.Enum):
        return str(value.value).lower()
    return value


# --------------------------------------------------------------------------------------------
# defaults against Accelerate


def _accelerate_pairs():
    from accelerate import utils as acc

    return [
        (AutocastKwargs, acc.AutocastKwargs),
        (DistributedDataParallelKwargs, acc.DistributedDataParallelKwargs),
        (GradScalerKwargs, acc.GradScalerKwargs),
        (DataLoaderConfiguration, acc.DataLoaderConfiguration),
        (ProjectConfiguration, acc.ProjectConfiguration),
        (GradientAccumulationPlugin, acc.GradientAccumulationPlugin),
        (TorchDynamoPlugin, acc.TorchDynamoPlugin),
    ]


@pytest.mark.parametrize("ours, theirs", _accelerate_pairs(), ids=lambda c: c.__name__)
def test_defaults_match_accelerate(ours, theirs):
    our_names = {f.name for f in dataclasses.fields(ours)}
    their_names = {f.name for f in dataclasses.fields(theirs)}
    assert our_names <= their_names, our_names - their_names
    with clear_environment():
        mine, reference = ours(), theirs()
    shared = our_names & their_names
    assert shared
    for name in sorted(shared):
        assert _norm(getattr(mine, name)) == _norm(getattr(reference, name)), name


def test_ddp_hook_type_values_match_accelerate():
    from accelerate.utils import DDPCommunicationHookType as Theirs

    assert [m.value for m in DDPCommunicationHookType] == [m.value for m in Theirs]
    assert [m.name for m in DDPCommunicationHookType] == [m.name for m in Theirs]


def test_fp8_declared_default_matches_accelerate():
    from accelerate.utils import FP8RecipeKwargs as Theirs

    theirs = {f.name: f.default for f in dataclasses.fields(Theirs)}
    assert theirs["backend"] is None
    assert dataclasses.fields(FP8RecipeKwargs)[0].default is None
    with clear_environment():
        assert FP8RecipeKwargs().backend is None


def test_fsdp_defaults_match_accelerate_fsdp2():
    from accelerate.utils import FullyShardedDataParallelPlugin as Theirs

    our_names = {f.name for f in dataclasses.fields(FullyShardedDataParallelPlugin)}
    assert our_names <= {f.name for f in dataclasses.fields(Theirs)}
    with clear_environment():
        mine = FullyShardedDataParallelPlugin()
        reference = Theirs(fsdp_version=2)
    # cpu_offload: Accelerate stores torch's policy object, accel the bool it came from.
    assert type(mine.offload_policy()) is type(reference.cpu_offload)
    # state_dict_type: accel defaults to FULL_STATE_DICT (Accelerate's FSDP2 to SHARDED).
    assert reference.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert mine.state_dict_type == "FULL_STATE_DICT"
    for name in sorted(our_names - {"cpu_offload", "state_dict_type"}):
        assert _norm(getattr(mine, name)) == _norm(getattr(reference, name)), name


def test_init_process_group_kwargs_is_reexported():
    from accel.state.kwargs import InitProcessGroupKwargs as Original

    assert InitProcessGroupKwargs is Original


# --------------------------------------------------------------------------------------------
# to_kwargs / to_dict


def test_simple_to_kwargs():
    assert AutocastKwargs().to_kwargs() == {}
    assert AutocastKwargs(enabled=False, cache_enabled=True).to_kwargs() == {
        "enabled": False,
        "cache_enabled": True,
    }
    assert GradScalerKwargs(init_scale=1024.0, growth_interval=10).to_kwargs() == {
        "init_scale": 1024.0,
        "growth_interval": 10,
    }
    assert GradientAccumulationPlugin(num_steps=4, adjust_scheduler=False).to_kwargs() == {
        "num_steps": 4,
        "adjust_scheduler": False,
    }


def test_ddp_to_kwargs_excludes_comm_fields_and_is_accepted_by_ddp():
    kwargs = DistributedDataParallelKwargs(
        find_unused_parameters=True,
        static_graph=True,
        comm_hook="POWER_SGD",
        comm_wrapper="fp16",
        comm_state_option={"matrix_approximation_rank": 2},
    )
    assert kwargs.comm_hook is DDPCommunicationHookType.POWER_SGD
    assert kwargs.comm_wrapper is DDPCommunicationHookType.FP16
    assert kwargs.to_kwargs() == {"find_unused_parameters": True, "static_graph": True}
    assert "comm_hook" not in kwargs.to_dict()
    assert "comm_hook" in kwargs.to_dict(ignore_keys=())
    import inspect

    ddp_params = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    assert set(DistributedDataParallelKwargs().to_dict()) <= set(ddp_params)


def test_dynamo_to_kwargs_matches_torch_compile_and_accelerate():
    from accelerate.utils import TorchDynamoPlugin as Theirs

    plugin = TorchDynamoPlugin(backend="INDUCTOR", mode="max-autotune", dynamic=False)
    assert plugin.backend is DynamoBackend.INDUCTOR
    expected = {"backend": "inductor", "mode": "max-autotune", "dynamic": False}
    assert plugin.to_kwargs() == expected
    with clear_environment():
        assert (
            Theirs(backend="INDUCTOR", mode="max-autotune", dynamic=False).to_kwargs() == expected
        )
    assert TorchDynamoPlugin().to_kwargs() == {}
    assert TorchDynamoPlugin(use_regional_compilation=True).to_kwargs() == {}
    opts = TorchDynamoPlugin(backend="eager", options={"x": 1}, disable=True).to_kwargs()
    assert opts == {"backend": "eager", "options": {"x": 1}, "disable": True}
    import inspect

    compile_params = inspect.signature(torch.compile).parameters
    assert set(TorchDynamoPlugin(backend="eager", fullgraph=True, options={}).to_dict()) - {
        "use_regional_compilation"
    } <= set(compile_params)


def test_dynamo_to_kwargs_includes_backend_from_env(monkeypatch):
    monkeypatch.setenv("ACCEL_DYNAMO_BACKEND", "eager")
    assert TorchDynamoPlugin().to_kwargs() == {"backend": "eager"}
    assert TorchDynamoPlugin().to_dict()["backend"] == "eager"


# --------------------------------------------------------------------------------------------
# project configuration, data loader configuration


def test_project_configuration_directories():
    config = ProjectConfiguration(project_dir="p")
    assert config.logging_dir == "p"
    config = ProjectConfiguration(project_dir="p", logging_dir="logs")
    config.set_directories("q")
    assert (config.project_dir, config.logging_dir) == ("q", "logs")
    config = ProjectConfiguration()
    config.set_directories("r")
    assert (config.project_dir, config.logging_dir) == ("r", "r")


def test_dataloader_configuration_values():
    config = DataLoaderConfiguration(dispatch_batches=True, use_seedable_sampler=True, data_seed=3)
    assert (config.dispatch_batches, config.data_seed) == (True, 3)


# --------------------------------------------------------------------------------------------
# environment


@pytest.mark.parametrize("prefix", ["ACCEL_", "ACCELERATE_"])
def test_dynamo_env_both_spellings(monkeypatch, prefix):
    monkeypatch.setenv(prefix + "DYNAMO_BACKEND", "aot_eager")
    monkeypatch.setenv(prefix + "DYNAMO_MODE", "reduce-overhead")
    monkeypatch.setenv(prefix + "DYNAMO_USE_FULLGRAPH", "true")
    monkeypatch.setenv(prefix + "DYNAMO_USE_DYNAMIC", "false")
    monkeypatch.setenv(prefix + "DYNAMO_USE_REGIONAL_COMPILATION", "1")
    plugin = TorchDynamoPlugin()
    assert plugin.backend is DynamoBackend.AOT_EAGER
    assert plugin.mode == "reduce-overhead"
    assert plugin.fullgraph is True
    assert plugin.dynamic is False
    assert plugin.use_regional_compilation is True


def test_dynamo_env_precedence(monkeypatch):
    monkeypatch.setenv("ACCEL_DYNAMO_BACKEND", "eager")
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "inductor")
    monkeypatch.setenv("ACCELERATE_DYNAMO_USE_FULLGRAPH", "yes")
    assert TorchDynamoPlugin().backend is DynamoBackend.EAGER
    explicit = TorchDynamoPlugin(backend="aot_eager", fullgraph=False)
    assert explicit.backend is DynamoBackend.AOT_EAGER
    assert explicit.fullgraph is False


def test_dynamo_dynamic_stays_none_without_env():
    plugin = TorchDynamoPlugin()
    assert plugin.dynamic is None
    assert plugin.backend is DynamoBackend.NO
    assert (plugin.mode, plugin.fullgraph, plugin.use_regional_compilation) == (
        "default",
        False,
        False,
    )


@pytest.mark.parametrize("key", ["ACCEL_FP8_BACKEND", "ACCELERATE_FP8_BACKEND"])
def test_fp8_backend_from_env(monkeypatch, key):
    monkeypatch.setenv(key, "ao")
    assert FP8RecipeKwargs().backend == "AO"
    monkeypatch.setenv(key, "msamp")
    with pytest.raises(ValueError, match="does not drive MS-AMP"):
        FP8RecipeKwargs()
    assert FP8RecipeKwargs(backend="ao").backend == "AO"


@pytest.mark.parametrize("prefix", ["FSDP_", "ACCEL_FSDP_"])
def test_fsdp_env(monkeypatch, prefix):
    for name, value in {
        "VERSION": "2",
        "RESHARD_AFTER_FORWARD": "false",
        "OFFLOAD_PARAMS": "true",
        "AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
        "TRANSFORMER_CLS_TO_WRAP": "Block, Embedding",
        "STATE_DICT_TYPE": "SHARDED_STATE_DICT",
        "ACTIVATION_CHECKPOINTING": "true",
        "CPU_RAM_EFFICIENT_LOADING": "true",
        "IGNORED_MODULES": "head.*",
    }.items():
        monkeypatch.setenv(prefix + name, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is False
    assert plugin.cpu_offload is True
    assert isinstance(plugin.offload_policy(), CPUOffloadPolicy)
    assert plugin.auto_wrap_policy == "transformer_based_wrap"
    assert plugin.transformer_cls_names_to_wrap == ["Block", "Embedding"]
    assert plugin.state_dict_type == "SHARDED_STATE_DICT"
    assert plugin.activation_checkpointing is True
    assert plugin.cpu_ram_efficient_loading is True
    assert plugin.ignored_modules == "head.*"


def test_fsdp_env_size_policy_and_state_dict_number(monkeypatch):
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP")
    monkeypatch.setenv("FSDP_MIN_NUM_PARAMS", "2000")
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "3")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "4")
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.auto_wrap_policy == "size_based_wrap"
    assert plugin.min_num_params == 2000
    assert plugin.state_dict_type == "SHARDED_STATE_DICT"
    assert plugin.reshard_after_forward == 4


def test_fsdp_explicit_argument_beats_env_even_when_equal_to_default(monkeypatch):
    monkeypatch.setenv("FSDP_VERSION", "1")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP")
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    plugin = FullyShardedDataParallelPlugin(
        2,
        reshard_after_forward=True,
        cpu_offload=False,
        auto_wrap_policy="no_wrap",
        state_dict_type="FULL_STATE_DICT",
        activation_checkpointing=False,
    )
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.cpu_offload is False
    assert plugin.auto_wrap_policy is None
    assert plugin.state_dict_type == "FULL_STATE_DICT"
    assert plugin.activation_checkpointing is False


def test_fsdp_accel_env_wins_over_accelerate_env(monkeypatch):
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT")
    monkeypatch.setenv("ACCEL_FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    assert FullyShardedDataParallelPlugin().state_dict_type == "SHARDED_STATE_DICT"


def test_fsdp_accepted_spellings():
    plugin = FullyShardedDataParallelPlugin(
        reshard_after_forward="SHARD_GRAD_OP",
        state_dict_type=StateDictType.SHARDED_STATE_DICT,
        auto_wrap_policy="Size_Based_Wrap",
        mixed_precision_policy={"param_dtype": "bf16", "reduce_dtype": torch.float32},
        cpu_offload=CPUOffloadPolicy(pin_memory=False),
    )
    assert plugin.reshard_after_forward is False
    assert plugin.state_dict_type == "SHARDED_STATE_DICT"
    assert plugin.auto_wrap_policy == "size_based_wrap"
    assert plugin.mixed_precision_policy == MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32
    )
    assert plugin.offload_policy() is plugin.cpu_offload
    assert FullyShardedDataParallelPlugin(state_dict_type=1).state_dict_type == "FULL_STATE_DICT"
    assert FullyShardedDataParallelPlugin(reshard_after_forward=2).reshard_after_forward == 2
    assert FullyShardedDataParallelPlugin(
        transformer_cls_names_to_wrap="A,B", auto_wrap_policy=("transformer_based_wrap")
    ).transformer_cls_names_to_wrap == ["A", "B"]


# --------------------------------------------------------------------------------------------
# mixed precision


def test_fsdp_mixed_precision_string_and_set_mixed_precision():
    plugin = FullyShardedDataParallelPlugin(mixed_precision_policy="fp16")
    assert plugin.mixed_precision_policy == MixedPrecisionPolicy(
        param_dtype=torch.float16, reduce_dtype=torch.float16
    )
    plugin.set_mixed_precision("bf16")  # already set: kept
    assert plugin.mixed_precision_policy.param_dtype == torch.float16
    plugin.set_mixed_precision("bf16", override=True)
    assert plugin.mixed_precision_policy.param_dtype == torch.bfloat16

    fresh = FullyShardedDataParallelPlugin()
    fresh.set_mixed_precision("no")
    assert fresh.mixed_precision_policy is None
    fresh.set_mixed_precision("bf16")
    assert fresh.mixed_precision_policy == MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16
    )
    policy = MixedPrecisionPolicy(param_dtype=torch.float16)
    assert (
        FullyShardedDataParallelPlugin(mixed_precision_policy=policy).mixed_precision_policy
        is policy
    )


# --------------------------------------------------------------------------------------------
# validation errors


def _fsdp(**kwargs):
    return lambda: FullyShardedDataParallelPlugin(**kwargs)


ERRORS = [
    (
        lambda: AutocastKwargs(enabled="yes"),
        TypeError,
        ["AutocastKwargs.enabled", "'yes'", "True or False"],
    ),
    (lambda: AutocastKwargs(cache_enabled=1), TypeError, ["cache_enabled", "1", "None"]),
    (
        lambda: DistributedDataParallelKwargs(comm_hook="fp8"),
        ValueError,
        ["comm_hook", "'fp8'", "'power_sgd'", "argument"],
    ),
    (
        lambda: DistributedDataParallelKwargs(comm_wrapper="power_sgd"),
        ValueError,
        ["comm_wrapper", "'power_sgd'", "'bf16'"],
    ),
    (
        lambda: DistributedDataParallelKwargs(bucket_cap_mb=0),
        ValueError,
        ["bucket_cap_mb", "0", "positive"],
    ),
    (lambda: DistributedDataParallelKwargs(dim="0"), TypeError, ["dim", "'0'", "int"]),
    (lambda: DistributedDataParallelKwargs(static_graph=None), TypeError, ["static_graph", "None"]),
    (
        lambda: DistributedDataParallelKwargs(comm_state_option=[1]),
        TypeError,
        ["comm_state_option", "[1]", "dict"],
    ),
    (
        lambda: DistributedDataParallelKwargs(comm_hook="power_sgd", comm_state_option={"rank": 2}),
        TypeError,
        ["comm_state_option", "rank", "matrix_approximation_rank"],
    ),
    (lambda: GradScalerKwargs(init_scale=0), ValueError, ["init_scale", "0", "> 0"]),
    (lambda: GradScalerKwargs(growth_factor=1.0), ValueError, ["growth_factor", "1.0", "> 1"]),
    (lambda: GradScalerKwargs(backoff_factor=1.5), ValueError, ["backoff_factor", "1.5", "(0, 1)"]),
    (lambda: GradScalerKwargs(growth_interval=0), ValueError, ["growth_interval", "0", ">= 1"]),
    (lambda: GradScalerKwargs(growth_interval=2.5), TypeError, ["growth_interval", "2.5", "int"]),
    (lambda: GradScalerKwargs(enabled="no"), TypeError, ["GradScalerKwargs.enabled", "'no'"]),
    (
        lambda: FP8RecipeKwargs(backend="cuda"),
        ValueError,
        ["FP8RecipeKwargs.backend", "'cuda'", "'te'", "'msamp'", "'ao'", "argument"],
    ),
    (
        lambda: DataLoaderConfiguration(split_batches=1),
        TypeError,
        ["split_batches", "1", "True or False"],
    ),
    (lambda: DataLoaderConfiguration(dispatch_batches="x"), TypeError, ["dispatch_batches", "'x'"]),
    (lambda: DataLoaderConfiguration(data_seed=-1), ValueError, ["data_seed", "-1", ">= 0"]),
    (lambda: ProjectConfiguration(total_limit=0), ValueError, ["total_limit", "0", ">= 1"]),
    (lambda: ProjectConfiguration(iteration=-2), ValueError, ["iteration", "-2"]),
    (lambda: ProjectConfiguration(project_dir=3), TypeError, ["project_dir", "3", "path"]),
    (lambda: ProjectConfiguration(save_on_each_node="y"), TypeError, ["save_on_each_node", "'y'"]),
    (lambda: GradientAccumulationPlugin(num_steps=0), ValueError, ["num_steps", "0", ">= 1"]),
    (lambda: GradientAccumulationPlugin(num_steps=2.0), TypeError, ["num_steps", "2.0", "integer"]),
    (lambda: GradientAccumulationPlugin(num_steps=True), TypeError, ["num_steps", "True"]),
    (
        lambda: GradientAccumulationPlugin(sync_each_batch=None),
        TypeError,
        ["sync_each_batch", "None"],
    ),
    (
        lambda: TorchDynamoPlugin(backend="fast"),
        ValueError,
        ["TorchDynamoPlugin.backend", "'fast'", "'inductor'", "argument"],
    ),
    (lambda: TorchDynamoPlugin(mode="turbo"), ValueError, ["mode", "'turbo'", "'max-autotune'"]),
    (lambda: TorchDynamoPlugin(fullgraph="yes"), TypeError, ["fullgraph", "'yes'"]),
    (lambda: TorchDynamoPlugin(options=[1]), TypeError, ["options", "[1]", "dict"]),
    (
        lambda: TorchDynamoPlugin(mode="max-autotune", options={"a": 1}),
        ValueError,
        ["mode='max-autotune'", "options", "only one"],
    ),
    (
        _fsdp(fsdp_version=1),
        ValueError,
        ["fsdp_version=1", "argument", "FSDP2", "fully_shard", "reshard_after_forward"],
    ),
    (_fsdp(fsdp_version=3), ValueError, ["fsdp_version=3", "expected 2"]),
    (
        _fsdp(sharding_strategy="FULL_SHARD"),
        TypeError,
        ["sharding_strategy", "FSDP2", "reshard_after_forward"],
    ),
    (_fsdp(use_orig_params=True), TypeError, ["use_orig_params", "FSDP2"]),
    (_fsdp(reshard_after_forward=1), ValueError, ["reshard_after_forward=1", "integer >= 2"]),
    (
        _fsdp(reshard_after_forward="maybe"),
        ValueError,
        ["reshard_after_forward='maybe'", "SHARD_GRAD_OP"],
    ),
    (_fsdp(reshard_after_forward=1.5), TypeError, ["reshard_after_forward=1.5"]),
    (_fsdp(cpu_offload="yes"), TypeError, ["cpu_offload='yes'", "OffloadPolicy"]),
    (
        _fsdp(auto_wrap_policy="layer_wrap"),
        ValueError,
        [
            "auto_wrap_policy='layer_wrap'",
            "'transformer_based_wrap'",
            "'size_based_wrap'",
            "'no_wrap'",
        ],
    ),
    (_fsdp(auto_wrap_policy=5), TypeError, ["auto_wrap_policy=5", "callable"]),
    (
        _fsdp(auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=[1]),
        TypeError,
        ["transformer_cls_names_to_wrap=[1]", "class names"],
    ),
    (
        _fsdp(auto_wrap_policy="size_based_wrap", min_num_params=-1),
        ValueError,
        ["min_num_params=-1", ">= 0"],
    ),
    (
        _fsdp(auto_wrap_policy="size_based_wrap", min_num_params=1e6),
        TypeError,
        ["min_num_params=1000000.0", "integer"],
    ),
    (
        _fsdp(mixed_precision_policy="fp8"),
        ValueError,
        ["mixed_precision_policy='fp8'", "'bf16'", "'fp32'"],
    ),
    (
        _fsdp(mixed_precision_policy={"buffer_dtype": torch.float16}),
        ValueError,
        ["mixed_precision_policy", "buffer_dtype", "param_dtype"],
    ),
    (
        _fsdp(mixed_precision_policy={"param_dtype": "int8"}),
        ValueError,
        ["param_dtype", "'int8'", "bfloat16"],
    ),
    (
        _fsdp(mixed_precision_policy=torch.float16),
        TypeError,
        ["mixed_precision_policy=torch.float16", "MixedPrecisionPolicy"],
    ),
    (
        _fsdp(state_dict_type="LOCAL_STATE_DICT"),
        ValueError,
        ["state_dict_type='LOCAL_STATE_DICT'", "FULL_STATE_DICT", "no LOCAL_STATE_DICT"],
    ),
    (_fsdp(state_dict_type=2), ValueError, ["state_dict_type=2", "SHARDED_STATE_DICT"]),
    (_fsdp(state_dict_type="full"), ValueError, ["state_dict_type='full'", "'FULL_STATE_DICT'"]),
    (
        _fsdp(activation_checkpointing="true"),
        TypeError,
        ["activation_checkpointing='true'", "True or False"],
    ),
    (_fsdp(cpu_ram_efficient_loading=None), TypeError, ["cpu_ram_efficient_loading=None"]),
    (
        _fsdp(ignored_modules="(unclosed"),
        ValueError,
        ["ignored_modules='(unclosed'", "regular expression"],
    ),
    (
        _fsdp(ignored_modules=torch.nn.Linear(1, 1)),
        TypeError,
        ["ignored_modules", "iterable of modules"],
    ),
    (_fsdp(ignored_modules=[1]), TypeError, ["ignored_modules=[1]", "torch.nn.Module"]),
]


@pytest.mark.parametrize("build, error, fragments", ERRORS)
def test_validation_errors(build, error, fragments):
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


ENV_ERRORS = [
    (
        "ACCEL_DYNAMO_BACKEND",
        "warp",
        TorchDynamoPlugin,
        ValueError,
        ["backend='warp'", "ACCEL_DYNAMO_BACKEND", "'inductor'"],
    ),
    (
        "ACCELERATE_DYNAMO_MODE",
        "fast",
        TorchDynamoPlugin,
        ValueError,
        ["mode='fast'", "ACCELERATE_DYNAMO_MODE", "'default'"],
    ),
    (
        "ACCELERATE_DYNAMO_USE_FULLGRAPH",
        "maybe",
        TorchDynamoPlugin,
        ValueError,
        ["fullgraph='maybe'", "ACCELERATE_DYNAMO_USE_FULLGRAPH", "truth value"],
    ),
    (
        "ACCEL_DYNAMO_USE_DYNAMIC",
        "sometimes",
        TorchDynamoPlugin,
        ValueError,
        ["dynamic='sometimes'", "ACCEL_DYNAMO_USE_DYNAMIC"],
    ),
    (
        "ACCELERATE_FP8_BACKEND",
        "cuda",
        FP8RecipeKwargs,
        ValueError,
        ["backend='cuda'", "ACCELERATE_FP8_BACKEND", "'te'"],
    ),
    (
        "FSDP_VERSION",
        "1",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["fsdp_version=1", "environment variable FSDP_VERSION", "FSDP2"],
    ),
    (
        "FSDP_VERSION",
        "two",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["fsdp_version='two'", "FSDP_VERSION"],
    ),
    (
        "FSDP_RESHARD_AFTER_FORWARD",
        "NO_SHARD",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["reshard_after_forward='NO_SHARD'", "FSDP_RESHARD_AFTER_FORWARD"],
    ),
    (
        "FSDP_OFFLOAD_PARAMS",
        "maybe",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["cpu_offload='maybe'", "FSDP_OFFLOAD_PARAMS"],
    ),
    (
        "ACCEL_FSDP_AUTO_WRAP_POLICY",
        "all",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["auto_wrap_policy='all'", "ACCEL_FSDP_AUTO_WRAP_POLICY", "'size_based_wrap'"],
    ),
    (
        "FSDP_STATE_DICT_TYPE",
        "LOCAL_STATE_DICT",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["FSDP_STATE_DICT_TYPE", "no LOCAL_STATE_DICT"],
    ),
    (
        "FSDP_ACTIVATION_CHECKPOINTING",
        "2",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["activation_checkpointing='2'", "FSDP_ACTIVATION_CHECKPOINTING"],
    ),
    (
        "FSDP_CPU_RAM_EFFICIENT_LOADING",
        "x",
        FullyShardedDataParallelPlugin,
        ValueError,
        ["cpu_ram_efficient_loading='x'", "FSDP_CPU_RAM_EFFICIENT_LOADING"],
    ),
]


@pytest.mark.parametrize("key, value, build, error, fragments", ENV_ERRORS)
def test_validation_errors_from_env(monkeypatch, key, value, build, error, fragments):
    monkeypatch.setenv(key, value)
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_fsdp_min_num_params_env_error(monkeypatch):
    monkeypatch.setenv("FSDP_MIN_NUM_PARAMS", "1e8")
    with pytest.raises(ValueError, match=r"min_num_params='1e8'.*FSDP_MIN_NUM_PARAMS"):
        FullyShardedDataParallelPlugin(auto_wrap_policy="size_based_wrap")
    # Only read for the size policy, like Accelerate.
    assert FullyShardedDataParallelPlugin().min_num_params is None


def test_set_mixed_precision_error():
    with pytest.raises(ValueError) as info:
        FullyShardedDataParallelPlugin().set_mixed_precision("fp4")
    for fragment in ("'fp4'", "'no'", "'bf16'", "'fp16'"):
        assert fragment in str(info.value)


def test_ddp_warnings_for_ignored_comm_options():
    with pytest.warns(UserWarning, match="comm_wrapper"):
        DistributedDataParallelKwargs(comm_wrapper="bf16")
    with pytest.warns(UserWarning, match="comm_state_option"):
        DistributedDataParallelKwargs(comm_hook="fp16", comm_state_option={"warm_start": False})


# --------------------------------------------------------------------------------------------
# FSDP wrap policy


class Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = Attention()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Linear(32, 8))


class BigBlock(Block):
    pass


class Model(torch.nn.Module):
    _no_split_modules = ("Block",)

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.layers = torch.nn.ModuleList([Block(), BigBlock()])
        self.head = torch.nn.Linear(8, 2)


def _matches(plugin, root, **kwargs):
    return {
        name for name, m in root.named_modules() if name and plugin.wrap_policy_matches(m, **kwargs)
    }


def test_wrap_transformer_based_explicit_names():
    model = Model()
    plugin = FullyShardedDataParallelPlugin(
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["Attention", "Embedding"],
    )
    assert plugin.check_wrap_classes(model) == ["Attention", "Embedding"]
    assert _matches(plugin, model) == {"embed", "layers.0.attn", "layers.1.attn"}


def test_wrap_transformer_based_uses_no_split_modules_and_subclasses():
    model = Model()
    plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="TRANSFORMER_BASED_WRAP")
    assert plugin.check_wrap_classes(model) == ["Block"]
    assert _matches(plugin, model, model=model) == {"layers.0", "layers.1"}
    with pytest.raises(ValueError, match="pass model="):
        plugin.wrap_policy_matches(model.layers[0])


def test_wrap_transformer_looks_through_checkpoint_wrapper():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    plugin = FullyShardedDataParallelPlugin(
        auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["Block"]
    )
    assert plugin.wrap_policy_matches(checkpoint_wrapper(Block()))


def test_check_wrap_classes_names_unknown_classes():
    plugin = FullyShardedDataParallelPlugin(
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["Block", "GPT2Block"],
    )
    with pytest.raises(ValueError) as info:
        plugin.check_wrap_classes(Model())
    message = str(info.value)
    assert "'GPT2Block'" in message and "'Block'" not in message
    assert "transformer_cls_names_to_wrap" in message and "Attention" in message


def test_check_wrap_classes_warns_without_names():
    plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="transformer_based_wrap")
    with pytest.warns(UserWarning, match="no class names"):
        assert plugin.check_wrap_classes(torch.nn.Linear(2, 2)) == []
    assert FullyShardedDataParallelPlugin().check_wrap_classes(Model()) == []


def test_wrap_size_based():
    model = Model()
    block = sum(p.numel() for p in Block().parameters())
    plugin = FullyShardedDataParallelPlugin(
        auto_wrap_policy="size_based_wrap", min_num_params=block
    )
    assert _matches(plugin, model) == {"layers", "layers.0", "layers.1"}
    plugin = FullyShardedDataParallelPlugin(
        auto_wrap_policy="size_based_wrap", min_num_params=block + 1
    )
    assert _matches(plugin, model) == {"layers"}
    default = FullyShardedDataParallelPlugin(auto_wrap_policy="size_based_wrap")
    assert _matches(default, model) == set()  # 1e8 parameters by default
    zero = FullyShardedDataParallelPlugin(auto_wrap_policy="size_based_wrap", min_num_params=0)
    assert "layers.0.attn" in _matches(zero, model)
    assert not zero.wrap_policy_matches(torch.nn.ReLU())  # nothing to shard


def test_wrap_no_wrap_and_callables():
    model = Model()
    assert _matches(FullyShardedDataParallelPlugin(), model) == set()
    assert _matches(FullyShardedDataParallelPlugin(auto_wrap_policy="no_wrap"), model) == set()
    custom = FullyShardedDataParallelPlugin(
        auto_wrap_policy=lambda m: isinstance(m, torch.nn.Embedding)
    )
    assert _matches(custom, model) == {"embed"}
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    legacy = FullyShardedDataParallelPlugin(
        auto_wrap_policy=functools.partial(
            transformer_auto_wrap_policy, transformer_layer_cls={Attention}
        )
    )
    assert _matches(legacy, model) == {"layers.0.attn", "layers.1.attn"}


def test_names_ignored_warning_without_transformer_policy():
    with pytest.warns(UserWarning, match="ignored"):
        FullyShardedDataParallelPlugin(transformer_cls_names_to_wrap=["Block"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FullyShardedDataParallelPlugin()


# --------------------------------------------------------------------------------------------
# DDP communication hook on a real one-process gloo group


@pytest.fixture
def gloo_group():
    assert not dist.is_initialized()
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _train_step(ddp: torch.nn.Module) -> list[torch.Tensor]:
    torch.manual_seed(0)
    ddp(torch.randn(4, 8)).sum().backward()
    return [p.grad.clone() for p in ddp.parameters()]


@pytest.mark.parametrize(
    "options",
    [
        {"comm_hook": "fp16"},
        {"comm_hook": "bf16"},
        {"comm_hook": "power_sgd", "comm_state_option": {"start_powerSGD_iter": 2}},
        {
            "comm_hook": "batched_power_sgd",
            "comm_wrapper": "fp16",
            "comm_state_option": {"start_powerSGD_iter": 2},
        },
    ],
    ids=lambda o: "+".join(str(v) for k, v in o.items() if k != "comm_state_option"),
)
def test_register_comm_hook_for_real(gloo_group, options):
    torch.manual_seed(0)
    reference = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 4))
    expected = _train_step(reference)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 4))
    kwargs = DistributedDataParallelKwargs(**options)
    kwargs.register_comm_hook(model)
    hook_name = model._get_ddp_logging_data().get("comm_hook", "")
    assert hook_name, "no comm hook recorded by DDP"
    if "comm_wrapper" in options:
        assert f"{options['comm_wrapper']}_compress_wrapper" in hook_name
    elif "power_sgd" in options["comm_hook"]:
        assert "powerSGD" in hook_name
    else:
        assert f"{options['comm_hook']}_compress" in hook_name
    got = _train_step(model)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-2, rtol=1e-2)
    with pytest.raises(RuntimeError):  # DDP accepts one hook only: the first one is in place
        kwargs.register_comm_hook(model)


def test_register_comm_hook_no_hook_and_wrong_model(gloo_group):
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
    DistributedDataParallelKwargs().register_comm_hook(model)
    assert not model._get_ddp_logging_data().get("comm_hook")
    with pytest.raises(TypeError, match="DistributedDataParallel"):
        DistributedDataParallelKwargs(comm_hook="fp16").register_comm_hook(torch.nn.Linear(2, 2))
