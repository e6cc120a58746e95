"""Nothing accepted and then ignored: every ``Accelerator`` argument and every field of every
kwargs/plugin dataclass either changes what the user sees or raises.

Each probe sets one option to a non-default value and shows a difference from the default
(or the error), in this process. Options that act only with several processes (DDP, FSDP,
batch splitting, ...) are probed by ``workers/precision_checks.py`` inside the one 2-process
launch of ``test_precision_distributed.py`` (checks named ``option_<Owner>_<field>``), and
:func:`test_every_option_has_a_probe` proves that the union covers everything.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from launching import WORKERS
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from accel.core import (
    Accelerator,
    AutocastKwargs,
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    FP8RecipeKwargs,
    FullyShardedDataParallelPlugin,
    GeneralTracker,
    GradientAccumulationPlugin,
    GradScalerKwargs,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    TorchDynamoPlugin,
)
from accel.state import reset_state

# ~50 Accelerators and a few compiles: 30-120 s on 2 busy cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DATACLASSES = (
    AutocastKwargs,
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    FP8RecipeKwargs,
    FullyShardedDataParallelPlugin,
    GradientAccumulationPlugin,
    GradScalerKwargs,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    TorchDynamoPlugin,
)
# Options whose effect cannot be shown on this machine (one CPU host, no GPU, no torchao);
# each is still covered where it can be, as the reason says.
UNOBSERVABLE_HERE = {
    ("Accelerator", "cpu"): "selects the CPU over a GPU; this machine has no GPU",
    ("ProjectConfiguration", "save_on_each_node"): "differs only with several machines",
    ("FP8RecipeKwargs", "fp8_format"): "acts in torchao's config; see test_fp8_recipe_maps",
    ("FP8RecipeKwargs", "override_linear_precision"): "see test_fp8_recipe_maps",
    # Accelerate 1.15 drops this field's default (True) in to_kwargs() and then reads False,
    # so it never acts there; accel keeps that, since honouring it would stop OneCycleLR early
    # under accumulation (listed in docs/migration.md).
    ("GradientAccumulationPlugin", "adjust_scheduler"): "inert in Accelerate 1.15, kept so",
}
PROBES: dict[tuple[str, str], Callable[..., None]] = {}


def probe(owner: str, *fields: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(function: Callable[..., None]) -> Callable[..., None]:
        for field in fields:
            PROBES[(owner, field)] = function
        return function

    return register


def _distributed_probes() -> set[tuple[str, str]]:
    text = (WORKERS / "precision_checks.py").read_text()
    return {(match[1], match[2]) for match in re.finditer(r"def option_([A-Za-z]+)_(\w+)\(", text)}


def _fresh(**kwargs) -> Accelerator:
    reset_state()
    return Accelerator(**kwargs)


def _linear_dtypes(accelerator: Accelerator) -> list[torch.dtype]:
    model = accelerator.prepare(nn.Sequential(nn.Linear(4, 4)))
    seen: list[torch.dtype] = []
    accelerator.unwrap_model(model)[0].register_forward_hook(
        lambda _m, _i, out: seen.append(out.dtype)
    )
    model(torch.randn(2, 4))
    return seen


def _sync_pattern(accelerator: Accelerator, batches: int = 3) -> list[bool]:
    model = nn.Linear(2, 1)
    loader = DataLoader(TensorDataset(torch.randn(batches, 2)), batch_size=1)
    model, loader = accelerator.prepare(model, loader)
    pattern = []
    for (_x,) in loader:
        with accelerator.accumulate(model):
            pattern.append(accelerator.sync_gradients)
    return pattern


def _order(accelerator: Accelerator) -> list[int]:
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.arange(32)), batch_size=4, shuffle=True)
    return [int(v) for (batch,) in accelerator.prepare(loader) for v in batch]


# ------------------------------------------------------------------------------ Accelerator


@probe("Accelerator", "device_placement")
def _device_placement(value):
    moved = []

    class Recorder(nn.Linear):
        def to(self, *args, **kwargs):
            moved.append(args)
            return super().to(*args, **kwargs)

    _fresh(device_placement=value).prepare(Recorder(2, 2))
    return bool(moved)


@probe("Accelerator", "mixed_precision")
def _mixed_precision(value):
    return _linear_dtypes(_fresh(mixed_precision=value))


@probe("Accelerator", "gradient_accumulation_steps")
def _accumulation_steps(value):
    return _sync_pattern(_fresh(gradient_accumulation_steps=value))


@probe("Accelerator", "gradient_accumulation_plugin")
def _accumulation_plugin(value):
    return _sync_pattern(_fresh(gradient_accumulation_plugin=value))


@probe("Accelerator", "dataloader_config")
def _dataloader_config(value):
    return _order(_fresh(dataloader_config=value))


@probe("Accelerator", "step_scheduler_with_optimizer")
def _step_scheduler(value):
    accelerator = _fresh(gradient_accumulation_steps=2, step_scheduler_with_optimizer=value)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    loader = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=1)
    model, optimizer, scheduler, loader = accelerator.prepare(model, optimizer, scheduler, loader)
    for (x,) in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(x).sum())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    return scheduler.get_last_lr()


@probe("Accelerator", "kwargs_handlers")
def _kwargs_handlers(value):
    return _fresh(mixed_precision="fp16", kwargs_handlers=value).scaler.get_scale()


@probe("Accelerator", "dynamo_backend", "dynamo_plugin")
def _dynamo(value, name):
    model = _fresh(**{name: value}).prepare(nn.Linear(2, 2))
    return type(model).__name__


@probe("Accelerator", "log_with")
def _log_with(value):
    logged = []

    class Recorder(GeneralTracker):
        name = "recorder"
        requires_logging_directory = False

        def __init__(self):
            super().__init__()

        @property
        def tracker(self):
            return self

        def log(self, values, step=None, **kwargs):
            logged.append(values)

    accelerator = _fresh(log_with=[Recorder()] if value else value)
    accelerator.init_trackers("walk")
    accelerator.log({"loss": 1.0})
    return logged


@probe("Accelerator", "project_dir", "project_config")
def _project(value, name, tmp_path):
    config = ProjectConfiguration(automatic_checkpoint_naming=True)
    kwargs = {"project_config": config} if name == "project_dir" else {}
    if value is not None:
        kwargs[name] = tmp_path if name == "project_dir" else value(tmp_path)
    accelerator = _fresh(**kwargs)
    accelerator.prepare(nn.Linear(2, 2))
    try:
        return Path(accelerator.save_state()).relative_to(tmp_path).as_posix()
    except (ValueError, TypeError) as error:
        return type(error).__name__


@probe(
    "Accelerator",
    "torch_tp_plugin",
    "megatron_lm_plugin",
    "parallelism_config",
    "deepspeed_plugin",
    "deepspeed_plugins",
)
def _refused(value, name):
    _fresh(**{name: value})


# ------------------------------------------------------------------------------- dataclasses


@probe("DataLoaderConfiguration", "use_seedable_sampler", "data_seed")
def _seedable(value, name):
    config = {"use_seedable_sampler": True, "data_seed": 7}
    config[name] = value if value is not None else dataclasses.MISSING
    config = {k: v for k, v in config.items() if v is not dataclasses.MISSING}
    return _order(_fresh(dataloader_config=DataLoaderConfiguration(**config)))


@probe("DataLoaderConfiguration", "non_blocking")
def _non_blocking(value, monkeypatch):
    import accel.core.data.loaders as loaders

    calls = []
    real = loaders.send_to_device

    def spy(*args, **kwargs):
        calls.append(kwargs.get("non_blocking"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loaders, "send_to_device", spy)
    accelerator = _fresh(dataloader_config=DataLoaderConfiguration(non_blocking=value))
    list(accelerator.prepare(DataLoader(TensorDataset(torch.arange(4)), batch_size=2)))
    return calls


@probe("DataLoaderConfiguration", "use_stateful_dataloader")
def _stateful(value):
    accelerator = _fresh(dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=value))
    accelerator.prepare(DataLoader(TensorDataset(torch.arange(4))))


@probe("ProjectConfiguration", "project_dir", "automatic_checkpoint_naming", "iteration")
def _naming(value, name, tmp_path):
    config = {"project_dir": str(tmp_path), "automatic_checkpoint_naming": True}
    config[name] = value if name != "project_dir" else (value and str(tmp_path / value))
    accelerator = _fresh(project_config=ProjectConfiguration(**config))
    accelerator.prepare(nn.Linear(2, 2))
    try:
        return Path(accelerator.save_state()).relative_to(tmp_path).as_posix()
    except ValueError as error:
        return str(error)[:40]


@probe("ProjectConfiguration", "total_limit")
def _total_limit(value, tmp_path):
    config = ProjectConfiguration(tmp_path, automatic_checkpoint_naming=True, total_limit=value)
    accelerator = _fresh(project_config=config)
    accelerator.prepare(nn.Linear(2, 2))
    for _ in range(3):
        accelerator.save_state()
    return sorted(p.name for p in (tmp_path / "checkpoints").iterdir())


@probe("ProjectConfiguration", "logging_dir")
def _logging_dir(value, tmp_path):
    config = ProjectConfiguration(str(tmp_path), logging_dir=value and str(tmp_path / value))
    return Path(_fresh(project_config=config).logging_dir).name


@probe("GradientAccumulationPlugin", "num_steps", "sync_with_dataloader")
def _accumulation_fields(value, name):
    options = {"num_steps": 2, name: value}
    if value is None:
        options.pop(name)
    try:
        plugin = GradientAccumulationPlugin(**options)
    except ValueError as error:
        return str(error)
    return _sync_pattern(_fresh(gradient_accumulation_plugin=plugin))


@probe("TorchDynamoPlugin", "backend", "mode", "fullgraph", "dynamic", "options", "disable")
def _compile_options(value, name, monkeypatch):
    seen = {}
    real = torch.compile

    def spy(model=None, **kwargs):
        seen.update(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    options = {"backend": "eager", name: value}
    if value is None:
        options.pop(name)
    _fresh(dynamo_plugin=TorchDynamoPlugin(**options)).prepare(nn.Linear(2, 2))
    return dict(seen)  # a copy: a later probe's spy calls through this one


@probe("TorchDynamoPlugin", "use_regional_compilation")
def _regional(value):
    class Blocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])

        def forward(self, x):
            return self.layers[1](self.layers[0](x))

    plugin = TorchDynamoPlugin(backend="eager", use_regional_compilation=value)
    return type(_fresh(dynamo_plugin=plugin).prepare(Blocks())).__name__


@probe("DistributedDataParallelKwargs", "check_reduction")
def _check_reduction(value):
    DistributedDataParallelKwargs(check_reduction=value)


@probe("FullyShardedDataParallelPlugin", "fsdp_version")
def _fsdp_version(value):
    FullyShardedDataParallelPlugin(fsdp_version=value)


@probe("AutocastKwargs", "enabled", "cache_enabled")
def _autocast(value, name):
    handler = AutocastKwargs(**{name: value})
    accelerator = _fresh(mixed_precision="bf16", kwargs_handlers=[handler])
    seen = []

    class Probe(nn.Linear):
        def forward(self, x):
            seen.append((super().forward(x).dtype, torch.is_autocast_cache_enabled()))
            return x

    accelerator.prepare(Probe(2, 2))(torch.ones(1, 2))
    return seen


@probe("GradScalerKwargs", "init_scale", "growth_factor", "backoff_factor", "growth_interval")
def _scaler(value, name):
    options = {"init_scale": 1024.0, "growth_interval": 1, name: value}
    accelerator = _fresh(mixed_precision="fp16", kwargs_handlers=[GradScalerKwargs(**options)])
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    scales = []
    for inputs in ([[1.0, 1.0]], [[1.0, 1.0]], [[float("inf"), 1.0]]):
        accelerator.backward(model(torch.tensor(inputs)).sum())
        optimizer.step()
        optimizer.zero_grad()
        scales.append(accelerator.scaler.get_scale())
    return scales


@probe("GradScalerKwargs", "enabled")
def _scaler_enabled(value):
    accelerator = _fresh(mixed_precision="fp16", kwargs_handlers=[GradScalerKwargs(enabled=value)])
    model = nn.Linear(2, 1)
    model.weight.register_hook(lambda grad: seen.append(float(grad.abs().sum())))
    seen: list[float] = []
    model, _optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    accelerator.backward(model(torch.ones(1, 2)).sum())
    return seen


@probe("FP8RecipeKwargs", "backend")
def _fp8_backend(value):
    return FP8RecipeKwargs(backend=value).backend


_FP8_REFUSED = (
    "use_autocast_during_eval",
    "margin",
    "interval",
    "amax_history_len",
    "amax_compute_algo",
    "use_mxfp8_block_scaling",
    "opt_level",
)


@probe("FP8RecipeKwargs", *_FP8_REFUSED)
def _fp8_engine_only(value, name):
    FP8RecipeKwargs(**{name: value})


# Non-default values per option; ``RAISES`` marks those that must be refused.
RAISES = object()
VALUES: dict[tuple[str, str], object] = {
    ("Accelerator", "device_placement"): False,
    ("Accelerator", "mixed_precision"): "bf16",
    ("Accelerator", "gradient_accumulation_steps"): 2,
    ("Accelerator", "gradient_accumulation_plugin"): GradientAccumulationPlugin(num_steps=2),
    ("Accelerator", "dataloader_config"): DataLoaderConfiguration(
        use_seedable_sampler=True, data_seed=3
    ),
    ("Accelerator", "step_scheduler_with_optimizer"): False,
    ("Accelerator", "kwargs_handlers"): [GradScalerKwargs(init_scale=8.0)],
    ("Accelerator", "dynamo_backend"): "eager",
    ("Accelerator", "dynamo_plugin"): TorchDynamoPlugin(backend="eager"),
    ("Accelerator", "log_with"): True,
    ("Accelerator", "project_dir"): True,
    ("Accelerator", "project_config"): lambda path: ProjectConfiguration(
        str(path), automatic_checkpoint_naming=True
    ),
    ("Accelerator", "torch_tp_plugin"): RAISES,
    ("Accelerator", "megatron_lm_plugin"): RAISES,
    ("Accelerator", "parallelism_config"): RAISES,
    ("Accelerator", "deepspeed_plugin"): RAISES,
    ("Accelerator", "deepspeed_plugins"): RAISES,
    ("DataLoaderConfiguration", "use_seedable_sampler"): False,
    ("DataLoaderConfiguration", "data_seed"): 8,
    ("DataLoaderConfiguration", "non_blocking"): True,
    ("DataLoaderConfiguration", "use_stateful_dataloader"): RAISES,
    ("ProjectConfiguration", "project_dir"): "elsewhere",
    ("ProjectConfiguration", "automatic_checkpoint_naming"): False,
    ("ProjectConfiguration", "iteration"): 5,
    ("ProjectConfiguration", "total_limit"): 1,
    ("ProjectConfiguration", "logging_dir"): "logs",
    ("GradientAccumulationPlugin", "num_steps"): 3,
    ("GradientAccumulationPlugin", "sync_with_dataloader"): False,
    ("TorchDynamoPlugin", "backend"): "aot_eager",
    ("TorchDynamoPlugin", "mode"): "reduce-overhead",
    ("TorchDynamoPlugin", "fullgraph"): True,
    ("TorchDynamoPlugin", "dynamic"): True,
    ("TorchDynamoPlugin", "options"): {"trace.enabled": False},
    ("TorchDynamoPlugin", "disable"): True,
    ("TorchDynamoPlugin", "use_regional_compilation"): True,
    ("FullyShardedDataParallelPlugin", "fsdp_version"): RAISES,
    ("DistributedDataParallelKwargs", "check_reduction"): RAISES,
    ("AutocastKwargs", "enabled"): False,
    ("AutocastKwargs", "cache_enabled"): False,
    ("GradScalerKwargs", "init_scale"): 256.0,
    ("GradScalerKwargs", "growth_factor"): 4.0,
    ("GradScalerKwargs", "backoff_factor"): 0.25,
    ("GradScalerKwargs", "growth_interval"): 2,
    ("GradScalerKwargs", "enabled"): False,
    ("FP8RecipeKwargs", "backend"): "ao",
}
VALUES.update({("FP8RecipeKwargs", name): RAISES for name in _FP8_REFUSED})
# Defaults to compare against where the declared default cannot be passed as is.
BASELINES: dict[tuple[str, str], object] = {
    ("Accelerator", "kwargs_handlers"): [GradScalerKwargs()],
    ("Accelerator", "log_with"): None,
    ("Accelerator", "project_dir"): None,
    ("Accelerator", "project_config"): None,
    ("TorchDynamoPlugin", "backend"): "eager",
    ("DataLoaderConfiguration", "use_seedable_sampler"): True,
    ("DataLoaderConfiguration", "data_seed"): None,
    ("GradientAccumulationPlugin", "num_steps"): 2,
    ("ProjectConfiguration", "automatic_checkpoint_naming"): True,
}
REFUSED_VALUES = {
    ("Accelerator", "torch_tp_plugin"): object(),
    ("Accelerator", "megatron_lm_plugin"): object(),
    ("Accelerator", "parallelism_config"): object(),
    ("Accelerator", "deepspeed_plugin"): object(),
    ("Accelerator", "deepspeed_plugins"): object(),
    ("DataLoaderConfiguration", "use_stateful_dataloader"): True,
    ("FullyShardedDataParallelPlugin", "fsdp_version"): 1,
    ("DistributedDataParallelKwargs", "check_reduction"): True,
    ("FP8RecipeKwargs", "use_autocast_during_eval"): False,
    ("FP8RecipeKwargs", "margin"): 0,
    ("FP8RecipeKwargs", "interval"): 1,
    ("FP8RecipeKwargs", "amax_history_len"): 1024,
    ("FP8RecipeKwargs", "amax_compute_algo"): "max",
    ("FP8RecipeKwargs", "use_mxfp8_block_scaling"): True,
    ("FP8RecipeKwargs", "opt_level"): "O2",
}


def _all_options() -> list[tuple[str, str]]:
    options = [
        ("Accelerator", name)
        for name in inspect.signature(Accelerator.__init__).parameters
        if name != "self"
    ]
    options += [(cls.__name__, f.name) for cls in DATACLASSES for f in dataclasses.fields(cls)]
    return options


def _default(owner: str, name: str) -> object:
    if (owner, name) in BASELINES:
        return BASELINES[(owner, name)]
    if owner == "Accelerator":
        return inspect.signature(Accelerator.__init__).parameters[name].default
    cls = next(c for c in DATACLASSES if c.__name__ == owner)
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return None if field.default is dataclasses.MISSING else field.default


def test_every_option_has_a_probe():
    covered = set(PROBES) | _distributed_probes() | set(UNOBSERVABLE_HERE)
    missing = [option for option in _all_options() if option not in covered]
    assert not missing, f"options without a probe: {missing}"


@pytest.mark.parametrize("option", sorted(PROBES), ids="{0[0]}.{0[1]}".format)
def test_option_acts_or_raises(option, request):
    owner, name = option
    function = PROBES[option]
    wanted = inspect.signature(function).parameters
    extra = {"name": name} if "name" in wanted else {}
    for fixture in ("tmp_path", "monkeypatch"):
        if fixture in wanted:
            extra[fixture] = request.getfixturevalue(fixture)
    value = VALUES[option]
    if value is RAISES:
        with pytest.raises((ValueError, TypeError)) as info:
            function(REFUSED_VALUES[option], **extra)
        assert name in str(info.value) or type(REFUSED_VALUES[option]).__name__ in str(
            info.value
        ), str(info.value)
        return
    changed = function(value, **extra)
    if "tmp_path" in extra:
        extra["tmp_path"] = extra["tmp_path"] / "baseline"
        extra["tmp_path"].mkdir()
    baseline = function(_default(owner, name), **extra)
    assert changed != baseline, (option, changed)


def test_fp8_recipe_maps():
    """``fp8_format`` and ``override_linear_precision`` shape torchao's Float8LinearConfig."""
    pytest.importorskip("torchao.float8")
    from torchao.float8 import ScalingType

    from accel.core.fp8 import float8_config

    hybrid = float8_config(FP8RecipeKwargs())
    assert hybrid.cast_config_input.target_dtype == torch.float8_e4m3fn
    assert hybrid.cast_config_grad_output.target_dtype == torch.float8_e5m2
    e4m3 = float8_config(FP8RecipeKwargs(fp8_format="E4M3"))
    assert e4m3.cast_config_grad_output.target_dtype == torch.float8_e4m3fn
    wgrad = float8_config(FP8RecipeKwargs(override_linear_precision=(False, False, True)))
    assert wgrad.cast_config_input_for_grad_weight.scaling_type is ScalingType.DISABLED
    assert hybrid.cast_config_input_for_grad_weight.scaling_type is not ScalingType.DISABLED
