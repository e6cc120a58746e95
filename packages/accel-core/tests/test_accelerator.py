"""The ``Accelerator`` in one process: construction, ``prepare``, training loops and helpers."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import accel.core
from accel.core import (
    AcceleratedOptimizer,
    AcceleratedScheduler,
    Accelerator,
    AutocastKwargs,
    DataLoaderConfiguration,
    DistributedType,
    GradientAccumulationPlugin,
    GradScalerKwargs,
    TorchDynamoPlugin,
    set_seed,
)
from accel.state import GradientState

# --------------------------------------------------------------------------------------------
# helpers


def _regression_data(n: int = 40, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 4, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    return TensorDataset(inputs, targets)


def _training_objects(seed: int = 0, batch_size: int = 4, n: int = 40):
    """model, optimizer, dataloader, scheduler and loss function, built from ``seed``."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dataloader = DataLoader(_regression_data(n), batch_size=batch_size, shuffle=False)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    return model, optimizer, dataloader, scheduler, nn.MSELoss()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _count_steps(optimizer: torch.optim.Optimizer) -> list[int]:
    """A one-element list counting the real steps of ``optimizer``."""
    counter = [0]

    def hook(*_):
        counter[0] += 1

    optimizer.register_step_post_hook(hook)
    return counter


# --------------------------------------------------------------------------------------------
# construction


def test_defaults():
    accelerator = Accelerator()
    assert accelerator.distributed_type == DistributedType.NO
    assert accelerator.device == torch.device("cpu")
    assert accelerator.mixed_precision == "no"
    assert accelerator.gradient_accumulation_steps == 1
    assert accelerator.num_processes == 1
    assert accelerator.process_index == 0
    assert accelerator.local_process_index == 0
    assert accelerator.is_main_process and accelerator.is_local_main_process
    assert accelerator.is_last_process
    assert not accelerator.use_distributed
    assert not accelerator.multi_device
    assert accelerator.sync_gradients is True
    assert accelerator.scaler is None
    assert accelerator.native_amp is False
    assert accelerator.split_batches is False
    assert accelerator.step_scheduler_with_optimizer is True
    assert accelerator.device_placement is True
    assert accelerator.optimizer_step_was_skipped is False
    assert "NO" in repr(accelerator)


def test_parallelism_config_is_read_back_from_the_state():
    # TRL's SFTTrainer reads accelerator.parallelism_config (None when none was given).
    accelerator = Accelerator(cpu=True)
    assert accelerator.parallelism_config is None
    assert accelerator.parallelism_config is accelerator.state.parallelism_config


def test_cpu_flag_and_env():
    assert Accelerator(cpu=True).device == torch.device("cpu")
    accel.state.reset_state()
    os.environ["ACCEL_USE_CPU"] = "1"
    accelerator = Accelerator()
    assert accelerator.device.type == "cpu"
    assert accelerator.distributed_type == DistributedType.NO


@pytest.mark.parametrize("variable", ["ACCEL_MIXED_PRECISION", "ACCELERATE_MIXED_PRECISION"])
def test_mixed_precision_from_environment(variable):
    os.environ[variable] = "bf16"
    accelerator = Accelerator()
    assert accelerator.mixed_precision == "bf16"
    assert accelerator.native_amp is True
    assert accelerator.scaler is None  # bf16 needs no loss scaling


def test_explicit_mixed_precision_wins_over_environment():
    os.environ["ACCEL_MIXED_PRECISION"] = "bf16"
    assert Accelerator(mixed_precision="no").mixed_precision == "no"


def test_mixed_precision_is_case_insensitive():
    assert Accelerator(mixed_precision="BF16").mixed_precision == "bf16"


def test_fp16_on_cpu_is_accepted_with_a_cpu_scaler():
    accelerator = Accelerator(mixed_precision="fp16")
    assert accelerator.mixed_precision == "fp16"
    assert accelerator.native_amp
    assert isinstance(accelerator.scaler, torch.amp.GradScaler)
    assert accelerator.scaler._device == "cpu"


def test_fp8_on_cpu_names_what_is_missing():
    with pytest.raises(ValueError, match="mixed_precision='fp8' needs a CUDA GPU") as info:
        Accelerator(mixed_precision="fp8")
    assert "this job runs on cpu" in str(info.value)
    assert "torchao" in str(info.value)


def test_unknown_mixed_precision_lists_valid_modes():
    with pytest.raises(ValueError) as info:
        Accelerator(mixed_precision="fp32")
    message = str(info.value)
    assert "'fp32'" in message
    for mode in ("no", "fp16", "bf16", "fp8"):
        assert mode in message


def test_second_accelerator_without_arguments_shares_the_state():
    first = Accelerator(mixed_precision="bf16")
    second = Accelerator()
    assert second.mixed_precision == "bf16"
    assert second.state.__dict__ is first.state.__dict__
    assert Accelerator(mixed_precision="BF16", cpu=True).mixed_precision == "bf16"


def test_second_accelerator_with_a_different_precision_raises():
    Accelerator(mixed_precision="bf16")
    with pytest.raises(ValueError, match=r"mixed_precision='no'.*'bf16'"):
        Accelerator(mixed_precision="no")


def test_later_accelerator_ignores_environment_precision():
    Accelerator()
    os.environ["ACCEL_MIXED_PRECISION"] = "bf16"  # only the first Accelerator reads it
    assert Accelerator().mixed_precision == "no"


def test_accelerator_made_before_a_reset_fails_at_next_use():
    accelerator = Accelerator()
    accel.state.AcceleratorState._reset_state()
    for use in (lambda: accelerator.prepare(nn.Linear(2, 2)), lambda: accelerator.device):
        with pytest.raises(AttributeError) as info:
            use()
        message = str(info.value)
        assert message.startswith("`AcceleratorState` object has no attribute")
        assert "This happens if `AcceleratorState._reset_state()`" in message
    Accelerator()  # a new Accelerator brings the shared state back, for old objects too
    assert accelerator.prepare(nn.Linear(2, 2)) is not None


def test_bad_mixed_precision_in_environment_names_the_variable():
    os.environ["ACCEL_MIXED_PRECISION"] = "half"
    with pytest.raises(ValueError, match="ACCEL_MIXED_PRECISION"):
        Accelerator()


def test_gradient_accumulation_steps_and_plugin_conflict():
    with pytest.raises(ValueError, match="gradient_accumulation_plugin"):
        Accelerator(
            gradient_accumulation_steps=2,
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=2),
        )


def test_gradient_accumulation_plugin():
    plugin = GradientAccumulationPlugin(num_steps=3, sync_with_dataloader=False)
    accelerator = Accelerator(gradient_accumulation_plugin=plugin)
    assert accelerator.gradient_accumulation_steps == 3
    assert accelerator.gradient_state.sync_with_dataloader is False


@pytest.mark.parametrize("steps", [0, -1, "2", 2.0, True])
def test_bad_gradient_accumulation_steps(steps):
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        Accelerator(gradient_accumulation_steps=steps)


@pytest.mark.parametrize(
    "variable", ["ACCEL_GRADIENT_ACCUMULATION_STEPS", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS"]
)
def test_gradient_accumulation_steps_from_environment(variable):
    os.environ[variable] = "3"
    assert Accelerator().gradient_accumulation_steps == 3
    accel.state.reset_state()
    # An explicit value is not overridden by the environment.
    assert Accelerator(gradient_accumulation_steps=2).gradient_accumulation_steps == 2


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_gradient_accumulation_steps_in_environment_names_the_variable(value):
    os.environ["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = value
    with pytest.raises(ValueError, match="ACCELERATE_GRADIENT_ACCUMULATION_STEPS"):
        Accelerator()


def test_gradient_accumulation_steps_setter():
    accelerator = Accelerator()
    accelerator.gradient_accumulation_steps = 5
    assert accelerator.gradient_accumulation_steps == 5
    assert GradientState().num_steps == 5


def test_kwargs_handlers_are_stored():
    autocast = AutocastKwargs(enabled=False)
    scaler = GradScalerKwargs(init_scale=8.0)
    accelerator = Accelerator(kwargs_handlers=[autocast, scaler])
    assert accelerator.autocast_handler is autocast
    assert accelerator.scaler_handler is scaler
    assert accelerator.ddp_handler is None
    assert accelerator.init_handler is None
    assert accelerator.fp8_recipe_handler is None


def test_kwargs_handler_of_unknown_type():
    with pytest.raises(TypeError, match="DataLoaderConfiguration"):
        Accelerator(kwargs_handlers=[DataLoaderConfiguration()])
    with pytest.raises(TypeError, match="AutocastKwargs"):  # the message lists accepted types
        Accelerator(kwargs_handlers=[object()])


def test_duplicate_kwargs_handler():
    with pytest.raises(ValueError, match="AutocastKwargs"):
        Accelerator(kwargs_handlers=[AutocastKwargs(), AutocastKwargs(enabled=False)])


def test_dynamo_backend_and_plugin_conflict():
    with pytest.raises(ValueError, match="dynamo"):
        Accelerator(dynamo_backend="eager", dynamo_plugin=TorchDynamoPlugin(backend="eager"))


def test_split_batches_reaches_dataloader_config():
    accelerator = Accelerator(split_batches=True)
    assert accelerator.dataloader_config.split_batches is True
    assert accelerator.split_batches is True


def test_dataloader_config_is_used():
    config = DataLoaderConfiguration(even_batches=False)
    accelerator = Accelerator(dataloader_config=config)
    assert accelerator.dataloader_config is config
    assert accelerator.even_batches is False


def test_project_dir():
    accelerator = Accelerator(project_dir="runs")
    assert accelerator.project_dir == "runs"
    assert accelerator.project_configuration.project_dir == "runs"


# --------------------------------------------------------------------------------------------
# prepare


def test_prepare_returns_objects_in_order():
    model, optimizer, dataloader, scheduler, _ = _training_objects()
    accelerator = Accelerator()
    marker = {"not": "a torch object"}
    out = accelerator.prepare(model, optimizer, dataloader, scheduler, marker, 7)
    assert isinstance(out, tuple) and len(out) == 6
    p_model, p_optimizer, p_loader, p_scheduler, p_marker, p_int = out
    assert p_model is model  # one process, no wrapper needed
    assert isinstance(p_optimizer, AcceleratedOptimizer)
    assert isinstance(p_optimizer, torch.optim.Optimizer)
    assert p_optimizer.optimizer is optimizer
    assert isinstance(p_loader, DataLoader)
    assert isinstance(p_scheduler, AcceleratedScheduler)
    assert p_scheduler.scheduler is scheduler
    assert p_scheduler.optimizers == [p_optimizer]
    # Objects that are not torch models/optimizers/loaders/schedulers come back unchanged.
    assert p_marker is marker
    assert p_int == 7


def test_prepare_single_object_is_not_a_tuple():
    accelerator = Accelerator()
    model = nn.Linear(2, 2)
    assert accelerator.prepare(model) is model
    thing = object()
    assert accelerator.prepare(thing) is thing


def test_prepared_dataloader_yields_the_same_batches():
    dataset = _regression_data(10)
    plain = DataLoader(dataset, batch_size=3)
    prepared = Accelerator().prepare(DataLoader(dataset, batch_size=3))
    expected = list(plain)
    got = list(prepared)
    assert len(prepared) == len(plain) == 4
    assert len(got) == len(expected)
    for (x1, y1), (x2, y2) in zip(got, expected):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # A second pass gives the same batches again.
    assert all(torch.equal(a[0], b[0]) for a, b in zip(prepared, expected))


def test_prepared_dataloader_shuffles_a_permutation():
    prepared = Accelerator().prepare(DataLoader(list(range(12)), batch_size=4, shuffle=True))
    seen = torch.cat(list(prepared)).tolist()
    assert sorted(seen) == list(range(12))


def test_device_placement_list_of_wrong_length():
    accelerator = Accelerator()
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="device_placement"):
        accelerator.prepare(model, device_placement=[True, False])


def test_device_placement_list():
    accelerator = Accelerator()
    model = nn.Linear(2, 2)
    loader = DataLoader(list(range(4)), batch_size=2)
    p_model, p_loader = accelerator.prepare(model, loader, device_placement=[True, False])
    assert p_model is model
    assert p_loader.device is None  # batches are not moved


def test_optimizer_of_an_unprepared_model_is_refused():
    accelerator = Accelerator()
    model = nn.Linear(3, 3)
    stranger = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(stranger.parameters(), lr=0.1)
    with pytest.raises(ValueError) as info:
        accelerator.prepare(model, optimizer)
    message = str(info.value)
    assert "SGD" in message
    assert "model.parameters()" in message


def test_optimizer_of_a_model_prepared_earlier_is_accepted():
    accelerator = Accelerator()
    model = accelerator.prepare(nn.Linear(3, 3))
    optimizer = accelerator.prepare(torch.optim.SGD(model.parameters(), lr=0.1))
    assert isinstance(optimizer, AcceleratedOptimizer)


def test_optimizer_alone_is_accepted():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert isinstance(Accelerator().prepare(optimizer), AcceleratedOptimizer)


def test_preparing_twice_returns_the_same_objects():
    model, optimizer, dataloader, scheduler, _ = _training_objects()
    accelerator = Accelerator()
    first = accelerator.prepare(model, optimizer, dataloader, scheduler)
    second = accelerator.prepare(*first)
    for a, b in zip(first, second):
        assert a is b
    assert len(accelerator._models) == 1
    assert len(accelerator._optimizers) == 1
    assert len(accelerator._dataloaders) == 1


def test_model_with_multi_device_map_prepares_on_one_process():
    accelerator = Accelerator()
    model = nn.Linear(2, 2)
    model.hf_device_map = {"a": 0, "b": 1}
    assert accelerator.verify_device_map(model) is True
    assert accelerator.prepare(model) is model
    assert accelerator.verify_device_map(nn.Linear(2, 2)) is False


def test_prepare_model_in_evaluation_mode():
    accelerator = Accelerator()
    model = nn.Linear(2, 2)
    assert accelerator.prepare_model(model, evaluation_mode=True) is model


# --------------------------------------------------------------------------------------------
# training semantics


def _plain_loop(epochs: int = 2):
    model, optimizer, dataloader, scheduler, loss_function = _training_objects()
    device = "cpu"
    model.to(device)
    for _ in range(epochs):
        for batch in dataloader:
            optimizer.zero_grad()
            inputs, targets = batch
            inputs = inputs.to(device)
            targets = targets.to(device)
            outputs = model(inputs)
            loss = loss_function(outputs, targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return model, scheduler


def test_migration_guide_loop_matches_plain_pytorch_bitwise():
    expected_model, expected_scheduler = _plain_loop()

    model, optimizer, training_dataloader, scheduler, loss_function = _training_objects()
    accelerator = Accelerator()
    model, optimizer, training_dataloader, scheduler = accelerator.prepare(
        model, optimizer, training_dataloader, scheduler
    )
    for _ in range(2):
        # The finished code of the migration guide, unchanged.
        for batch in training_dataloader:
            optimizer.zero_grad()
            inputs, targets = batch
            outputs = model(inputs)
            loss = loss_function(outputs, targets)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()

    got = _weights(accelerator.unwrap_model(model))
    expected = _weights(expected_model)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert scheduler.get_last_lr() == expected_scheduler.get_last_lr()
    assert scheduler.get_last_lr()[0] < 0.05  # the schedule really advanced


def test_accumulate_matches_summed_micro_batches():
    steps = 4
    # Reference: sum loss/4 over 4 micro-batches, then step.
    model, optimizer, dataloader, _, loss_function = _training_objects(batch_size=2, n=16)
    reference = copy.deepcopy(model)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    batches = list(dataloader)
    assert len(batches) == 8
    for start in range(0, len(batches), steps):
        ref_optimizer.zero_grad()
        for inputs, targets in batches[start : start + steps]:
            (loss_function(reference(inputs), targets) / steps).backward()
        ref_optimizer.step()

    accelerator = Accelerator(gradient_accumulation_steps=steps)
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    real_steps = _count_steps(optimizer.optimizer)
    syncs = []
    for inputs, targets in dataloader:
        with accelerator.accumulate(model):
            syncs.append(accelerator.sync_gradients)
            accelerator.backward(loss_function(model(inputs), targets))
            optimizer.step()
            optimizer.zero_grad()

    assert syncs == [False, False, False, True, False, False, False, True]
    assert real_steps[0] == 2
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_accumulate_skips_step_and_zero_grad_until_sync():
    accelerator = Accelerator(gradient_accumulation_steps=3)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    before = model.weight.detach().clone()
    x = torch.ones(1, 2)

    with accelerator.accumulate(model):
        assert not accelerator.sync_gradients
        accelerator.backward(model(x).sum())
        first_grad = model.weight.grad.clone()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(model.weight, before)  # no step
    assert torch.equal(model.weight.grad, first_grad)  # gradients kept

    with accelerator.accumulate(model):
        accelerator.backward(model(x).sum())
        optimizer.step()
        optimizer.zero_grad()
    torch.testing.assert_close(model.weight.grad, 2 * first_grad)

    with accelerator.accumulate(model):
        assert accelerator.sync_gradients
        accelerator.backward(model(x).sum())
        optimizer.step()
        optimizer.zero_grad()
    assert not torch.equal(model.weight, before)
    assert model.weight.grad is None  # zero_grad set_to_none=True by default


def test_sync_gradients_at_end_of_dataloader():
    accelerator = Accelerator(gradient_accumulation_steps=4)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(torch.arange(10.0).unsqueeze(1), batch_size=1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    real_steps = _count_steps(optimizer.optimizer)
    for epoch in range(2):
        syncs, ends = [], []
        for batch in loader:
            with accelerator.accumulate(model):
                syncs.append(accelerator.sync_gradients)
                ends.append(accelerator.gradient_state.end_of_dataloader)
                accelerator.backward(model(batch).sum())
                optimizer.step()
                optimizer.zero_grad()
        # Steps 4 and 8, then the last batch; the count restarts each epoch.
        assert [i + 1 for i, s in enumerate(syncs) if s] == [4, 8, 10], epoch
        assert ends == [False] * 9 + [True]
    assert real_steps[0] == 6


def test_no_sync_at_end_of_dataloader_when_disabled():
    plugin = GradientAccumulationPlugin(num_steps=4, sync_with_dataloader=False)
    accelerator = Accelerator(gradient_accumulation_plugin=plugin)
    model = nn.Linear(1, 1)
    loader = accelerator.prepare(DataLoader(torch.arange(10.0).unsqueeze(1), batch_size=1))
    syncs = []
    for _ in loader:
        with accelerator.accumulate(model):
            syncs.append(accelerator.sync_gradients)
    assert [i + 1 for i, s in enumerate(syncs) if s] == [4, 8]


def test_scheduler_steps_only_on_sync_steps():
    accelerator = Accelerator(gradient_accumulation_steps=4)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    loader = DataLoader(torch.arange(10.0).unsqueeze(1), batch_size=1)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    lrs = []
    for batch in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(batch).sum())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            lrs.append(scheduler.get_last_lr()[0])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert scheduler.scheduler.last_epoch == 3


def test_adjust_scheduler_advances_step_count_only():
    accelerator = Accelerator(gradient_accumulation_steps=2)
    # GradientAccumulationPlugin.to_kwargs drops fields equal to their default, so (as in
    # Accelerate) adjust_scheduler is only in effect when set in the shared plugin kwargs.
    accelerator.gradient_state.plugin_kwargs["adjust_scheduler"] = True
    assert accelerator.gradient_state.adjust_scheduler
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    count = scheduler.scheduler._step_count
    with accelerator.accumulate(model):
        assert not accelerator.sync_gradients
        scheduler.step()
    assert scheduler.scheduler._step_count == count + 1
    assert scheduler.get_last_lr() == [1.0]
    with accelerator.accumulate(model):
        accelerator.backward(model(torch.ones(1, 1)).sum())
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == [0.5]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_step_scheduler_with_optimizer_false_steps_every_call():
    accelerator = Accelerator(gradient_accumulation_steps=4, step_scheduler_with_optimizer=False)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    assert scheduler.step_with_optimizer is False
    for _ in range(3):
        with accelerator.accumulate(model):
            accelerator.backward(model(torch.ones(1, 1)).sum())
            optimizer.step()
            scheduler.step()
    assert scheduler.scheduler.last_epoch == 3
    assert scheduler.get_last_lr() == [0.125]


def test_backward_divides_by_accumulation_steps():
    accelerator = Accelerator(gradient_accumulation_steps=4)
    weight = nn.Parameter(torch.ones(()))
    accelerator.backward(weight * 8.0)
    assert weight.grad.item() == 2.0


def test_backward_passes_kwargs():
    accelerator = Accelerator()
    weight = nn.Parameter(torch.ones(()))
    loss = weight * 3.0
    accelerator.backward(loss, retain_graph=True)
    accelerator.backward(loss)
    assert weight.grad.item() == 6.0


# --------------------------------------------------------------------------------------------
# dynamo


def test_dynamo_eager_compiles_the_model():
    accelerator = Accelerator(dynamo_backend="eager")
    model = nn.Linear(3, 2)
    compiled = accelerator.prepare(model)
    assert hasattr(compiled, "_orig_mod")
    assert compiled._orig_mod is model
    x = torch.randn(2, 3)
    torch.testing.assert_close(compiled(x), model(x))
    assert accelerator.unwrap_model(compiled) is compiled
    assert accelerator.unwrap_model(compiled, keep_torch_compile=False) is model
    assert accelerator.get_state_dict(compiled).keys() == model.state_dict().keys()


def test_no_dynamo_by_default():
    model = nn.Linear(3, 2)
    assert not hasattr(Accelerator().prepare(model), "_orig_mod")


# --------------------------------------------------------------------------------------------
# communication and helpers on one process


def test_gather_and_gather_for_metrics_tensor():
    accelerator = Accelerator()
    tensor = torch.arange(6).reshape(3, 2)
    assert torch.equal(accelerator.gather(tensor), tensor)
    assert torch.equal(accelerator.gather_for_metrics(tensor), tensor)
    nested = {"a": torch.ones(2), "b": [torch.zeros(3)]}
    out = accelerator.gather_for_metrics(nested)
    assert torch.equal(out["a"], nested["a"]) and torch.equal(out["b"][0], nested["b"][0])


def test_gather_for_metrics_objects():
    accelerator = Accelerator()
    assert accelerator.gather_for_metrics(["a", "b", 3]) == ["a", "b", 3]
    assert accelerator.gather_for_metrics([1, 2], use_gather_object=True) == [1, 2]


def test_gather_for_metrics_over_a_prepared_loader_keeps_every_sample_once():
    accelerator = Accelerator()
    loader = accelerator.prepare(DataLoader(torch.arange(10), batch_size=4))
    gathered = [accelerator.gather_for_metrics(batch) for batch in loader]
    assert torch.cat(gathered).tolist() == list(range(10))


def test_reduce_defaults_to_sum():
    accelerator = Accelerator()
    tensor = torch.tensor([1.0, 2.0])
    assert torch.equal(accelerator.reduce(tensor), tensor)
    assert torch.equal(accelerator.reduce(tensor, reduction="mean"), tensor)


def test_pad_across_processes_is_identity_on_one_process():
    accelerator = Accelerator()
    tensor = torch.arange(6).reshape(2, 3)
    assert torch.equal(accelerator.pad_across_processes(tensor, dim=1, pad_index=-1), tensor)
    padded = accelerator.pad_across_processes({"x": tensor}, pad_first=True)
    assert torch.equal(padded["x"], tensor)


def test_set_and_check_trigger():
    accelerator = Accelerator()
    assert accelerator.check_trigger() is False
    accelerator.set_trigger()
    assert accelerator.check_trigger() is True
    assert accelerator.check_trigger() is False  # checking resets it


def test_free_memory_returns_nones_and_forgets_objects():
    model, optimizer, dataloader, scheduler, _ = _training_objects()
    accelerator = Accelerator()
    objects = accelerator.prepare(model, optimizer, dataloader, scheduler)
    accelerator.step = 3
    freed = accelerator.free_memory(*objects)
    assert list(freed) == [None, None, None, None]
    assert accelerator._models == [] and accelerator._optimizers == []
    assert accelerator._schedulers == [] and accelerator._dataloaders == []
    assert accelerator.step == 0
    assert list(accelerator.clear(model)) == [None]


def test_skip_first_batches():
    accelerator = Accelerator()
    loader = accelerator.prepare(DataLoader(list(range(10)), batch_size=2))
    skipped = accelerator.skip_first_batches(loader, 2)
    assert [b.tolist() for b in skipped] == [[4, 5], [6, 7], [8, 9]]
    plain = accelerator.skip_first_batches(DataLoader(list(range(6)), batch_size=2), 1)
    assert [b.tolist() for b in plain] == [[2, 3], [4, 5]]
    # The original loader is untouched.
    assert len(list(loader)) == 5


def test_clip_grad_norm_():
    accelerator = Accelerator()
    weight = nn.Parameter(torch.zeros(2))
    weight.grad = torch.tensor([3.0, 4.0])
    norm = accelerator.clip_grad_norm_([weight], max_norm=1.0)
    assert norm.item() == pytest.approx(5.0)
    torch.testing.assert_close(weight.grad, torch.tensor([0.6, 0.8]))
    weight.grad = torch.tensor([3.0, -4.0])
    norm = accelerator.clip_grad_norm_([weight], max_norm=1.0, norm_type=1)
    assert norm.item() == pytest.approx(7.0)
    torch.testing.assert_close(weight.grad, torch.tensor([3.0, -4.0]) / 7.0, rtol=1e-5, atol=1e-5)


def test_clip_grad_value_():
    accelerator = Accelerator()
    weight = nn.Parameter(torch.zeros(3))
    weight.grad = torch.tensor([-2.0, 0.25, 3.0])
    assert accelerator.clip_grad_value_([weight], clip_value=0.5) is None
    assert weight.grad.tolist() == [-0.5, 0.25, 0.5]


def test_no_sync_is_a_no_op_on_one_process():
    accelerator = Accelerator()
    model = accelerator.prepare(nn.Linear(2, 1))
    with accelerator.no_sync(model):
        accelerator.backward(model(torch.ones(1, 2)).sum())
    assert model.weight.grad is not None
    with accelerator.trigger_sync_in_backward(model):
        pass


def test_join_uneven_inputs_is_a_no_op_on_one_process():
    accelerator = Accelerator()
    model = accelerator.prepare(nn.Linear(2, 1))
    ran = []
    with accelerator.join_uneven_inputs([model], even_batches=False):
        ran.append(True)
    assert ran == [True]
    assert accelerator.even_batches is True


def test_process_control_decorators():
    accelerator = Accelerator()
    calls = []

    @accelerator.on_main_process
    def on_main():
        calls.append("main")

    @accelerator.on_local_main_process
    def on_local_main():
        calls.append("local_main")

    @accelerator.on_last_process
    def on_last():
        calls.append("last")

    @accelerator.on_process(process_index=0)
    def on_zero():
        calls.append("p0")

    @accelerator.on_process(process_index=1)
    def on_one():
        calls.append("p1")

    @accelerator.on_local_process(local_process_index=0)
    def on_local_zero():
        calls.append("l0")

    for function in (on_main, on_local_main, on_last, on_zero, on_one, on_local_zero):
        function()
    # Without distribution every process-targeted function runs (as in Accelerate).
    assert calls == ["main", "local_main", "last", "p0", "p1", "l0"]


def test_process_control_contexts():
    accelerator = Accelerator()
    with accelerator.main_process_first():
        pass
    with accelerator.local_main_process_first():
        pass
    accelerator.wait_for_everyone()
    with accelerator.split_between_processes([1, 2, 3]) as mine:
        assert mine == [1, 2, 3]
    with accelerator.split_between_processes({"a": [1, 2]}, apply_padding=True) as mine:
        assert mine == {"a": [1, 2]}


def test_print(capsys):
    Accelerator().print("hello", 3, sep="-")
    assert capsys.readouterr().out == "hello-3\n"


def test_autocast_without_mixed_precision_is_a_no_op():
    accelerator = Accelerator()
    with accelerator.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_unwrap_model_without_wrappers():
    accelerator = Accelerator()
    model = accelerator.prepare(nn.Linear(2, 2))
    assert accelerator.unwrap_model(model) is model
    assert accelerator.unwrap_model(model, keep_fp32_wrapper=False) is model
    assert accelerator.get_state_dict(model).keys() == {"weight", "bias"}
    assert accelerator.get_state_dict(model, unwrap=False).keys() == {"weight", "bias"}


def test_same_seed_same_run():
    def run():
        set_seed(3)
        model = nn.Linear(4, 1)
        return model.weight.detach().clone()

    assert torch.equal(run(), run())


# --------------------------------------------------------------------------------------------
# accel.core exports


def test_every_export_resolves():
    for name in accel.core.__all__:
        assert getattr(accel.core, name) is not None, name
    assert set(accel.core.__all__) <= set(dir(accel.core))
    with pytest.raises(AttributeError, match="no_such_name"):
        accel.core.no_such_name  # noqa: B018


def test_import_is_lazy(fresh_import_probe):
    # In a fresh interpreter (conftest.FRESH_IMPORT_PROBE): `import accel.core` does not import
    # accel.core.accelerator; reading accel.core.Accelerator does.
    assert fresh_import_probe["accelerator_before_access"] is False, "imported eagerly"
    assert fresh_import_probe["accelerator_after_access"] is True
