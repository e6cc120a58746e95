"""fp16 mixed precision on 2 CPU processes, started by ``accel launch --mixed_precision fp16``.

The ``Accelerator`` is built without ``mixed_precision``: fp16 must arrive from the launcher.
Checks that ``Linear`` really computes in float16 (forward hook), that an overflow on one rank
skips the step on both and halves the loss scale like the GPU scaler, and records the fp16
weights after a few steps next to an fp32 run of the same data (compared in pytest).

The same launch probes the options that act only with several processes (``option_<Owner>_
<field>`` checks, listed by ``test_every_option.py``): each shows what the option changes.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _harness import Checks, refused
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from accel.core import (
    Accelerator,
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    FullyShardedDataParallelPlugin,
    GradientAccumulationPlugin,
    InitProcessGroupKwargs,
)
from accel.state import reset_state

RANK = int(os.environ["RANK"])
STEPS = 6
LR = 0.05
STORE_PORT = int(os.environ["MASTER_PORT"]) + 1
checks = Checks()
accelerator: Accelerator


@checks.add
def option_InitProcessGroupKwargs_backend():
    refused(
        lambda: Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend="mpi")]),
        "'mpi'",
        accepted="backend='mpi' was not used",
    )
    reset_state()


@checks.add
def option_InitProcessGroupKwargs_init_method():
    global accelerator
    handler = InitProcessGroupKwargs(
        init_method=f"tcp://{os.environ['MASTER_ADDR']}:{STORE_PORT}", timeout=timedelta(seconds=77)
    )
    accelerator = Accelerator(kwargs_handlers=[handler])
    store = dist.distributed_c10d._get_default_store()
    while hasattr(store, "underlying_store"):
        store = store.underlying_store
    assert store.port == STORE_PORT, store.port


@checks.add
def option_InitProcessGroupKwargs_timeout():
    backend = dist.group.WORLD._get_backend(torch.device("cpu"))
    assert backend.options._timeout == timedelta(seconds=77), backend.options._timeout


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * 32, 8, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True) / 4)


def _flat(model: nn.Module) -> dict[str, list[float]]:
    state = accelerator.unwrap_model(model).state_dict()
    return {name: tensor.float().flatten().tolist() for name, tensor in state.items()}


@checks.add
def fp16_from_launcher():
    assert accelerator.mixed_precision == "fp16", accelerator.mixed_precision
    assert accelerator.distributed_type.value == "MULTI_CPU", accelerator.distributed_type
    assert accelerator.num_processes == 2
    assert isinstance(accelerator.scaler, torch.amp.GradScaler)
    assert accelerator.scaler._device == "cpu"


@checks.add
def linear_computes_in_float16():
    model = accelerator.prepare(_model())
    seen = []
    for module in accelerator.unwrap_model(model).modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda _m, inputs, out: seen.append(out.dtype))
    output = model(torch.randn(4, 8))
    assert seen == [torch.float16, torch.float16], seen
    assert output.dtype == torch.float32  # outputs converted back, as with bf16


@checks.add
def overflow_skips_the_step_on_every_rank():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model, optimizer = accelerator.prepare(model, optimizer)
    before = {k: v.clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    scale = accelerator.scaler.get_scale()
    x = torch.randn(4, 8)
    if RANK == 0:
        x[0, 0] = float("inf")  # only rank 0 overflows; DDP's all-reduce spreads it
    accelerator.backward(model(x).pow(2).mean())
    optimizer.step()
    optimizer.zero_grad()
    assert optimizer.step_was_skipped
    assert accelerator.optimizer_step_was_skipped
    assert accelerator.scaler.get_scale() == scale * 0.5, (scale, accelerator.scaler.get_scale())
    after = accelerator.unwrap_model(model).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed"
    accelerator.backward(model(torch.randn(4, 8)).pow(2).mean())
    optimizer.step()
    assert not optimizer.step_was_skipped
    assert accelerator.scaler.get_scale() == scale * 0.5
    checks.record("scales", [scale, accelerator.scaler.get_scale()])


@checks.add
def train_fp16():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader(_data(), batch_size=16)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for x, y in loader:
        accelerator.backward(F.mse_loss(model(x), y))
        optimizer.step()
        optimizer.zero_grad()
    checks.record("weights_fp16", _flat(model))


@checks.add
def train_fp32_reference():
    """Plain fp32 torch on the full batches (what the 2 fp16 processes split between them)."""
    model = _model()
    checks.record("weights_init", {k: v.flatten().tolist() for k, v in model.state_dict().items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for x, y in DataLoader(_data(), batch_size=32):
        F.mse_loss(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    checks.record("weights_fp32", {k: v.flatten().tolist() for k, v in model.state_dict().items()})


# ----------------------------------------------------------- options acting on 2 processes


def _fresh(**kwargs) -> Accelerator:
    reset_state()  # keeps the process group; the next state adopts it
    return Accelerator(**kwargs)


def _ddp(**options) -> nn.Module:
    handler = DistributedDataParallelKwargs(**options)
    return _fresh(kwargs_handlers=[handler]).prepare(_model())


def _grads_after(model: nn.Module, steps: int = 1) -> torch.Tensor:
    for _ in range(steps):
        model.zero_grad()
        torch.manual_seed(RANK + 10)
        model(torch.randn(4, 8)).pow(2).mean().backward()
    return model.module[0].weight.grad.detach().clone()


def _bf16_exact(grad: torch.Tensor) -> bool:
    return torch.equal(grad, grad.bfloat16().float())


@checks.add
def option_DistributedDataParallelKwargs_dim():
    assert _ddp(dim=1).dim == 1 and _ddp().dim == 0


@checks.add
def option_DistributedDataParallelKwargs_broadcast_buffers():
    assert not _ddp(broadcast_buffers=False).broadcast_buffers and _ddp().broadcast_buffers


@checks.add
def option_DistributedDataParallelKwargs_bucket_cap_mb():
    assert _ddp(bucket_cap_mb=7).bucket_bytes_cap == 7 * 1024 * 1024
    assert _ddp().bucket_bytes_cap == 25 * 1024 * 1024


@checks.add
def option_DistributedDataParallelKwargs_find_unused_parameters():
    assert _ddp(find_unused_parameters=True).find_unused_parameters
    assert not _ddp().find_unused_parameters


@checks.add
def option_DistributedDataParallelKwargs_gradient_as_bucket_view():
    assert _ddp(gradient_as_bucket_view=True).gradient_as_bucket_view
    assert not _ddp().gradient_as_bucket_view


@checks.add
def option_DistributedDataParallelKwargs_static_graph():
    assert _ddp(static_graph=True).static_graph and not _ddp().static_graph


@checks.add
def option_DistributedDataParallelKwargs_comm_hook():
    assert _bf16_exact(_grads_after(_ddp(comm_hook="bf16")))
    assert not _bf16_exact(_grads_after(_ddp()))


@checks.add
def option_DistributedDataParallelKwargs_comm_wrapper():
    assert _bf16_exact(_grads_after(_ddp(comm_hook="power_sgd", comm_wrapper="bf16")))
    assert not _bf16_exact(_grads_after(_ddp(comm_hook="power_sgd")))


@checks.add
def option_DistributedDataParallelKwargs_comm_state_option():
    options = {"start_powerSGD_iter": 2, "matrix_approximation_rank": 1}
    low_rank = _grads_after(_ddp(comm_hook="power_sgd", comm_state_option=options), steps=3)
    full = _grads_after(_ddp(comm_hook="power_sgd"), steps=3)
    assert torch.linalg.matrix_rank(low_rank) == 1
    assert torch.linalg.matrix_rank(full) > 1


def _batch_shapes(**kwargs) -> list[int]:
    loader = _fresh(**kwargs).prepare(DataLoader(TensorDataset(torch.arange(16)), batch_size=8))
    return [len(batch) for (batch,) in loader]


@checks.add
def option_Accelerator_split_batches():
    assert _batch_shapes(split_batches=True) == [4, 4]
    assert _batch_shapes() == [8]


@checks.add
def option_DataLoaderConfiguration_split_batches():
    config = DataLoaderConfiguration(split_batches=True)
    assert _batch_shapes(dataloader_config=config) == [4, 4]


@checks.add
def option_DataLoaderConfiguration_even_batches():
    def count(**options) -> int:
        loader = DataLoader(TensorDataset(torch.arange(10)), batch_size=4)
        config = DataLoaderConfiguration(**options)
        return len(list(_fresh(dataloader_config=config).prepare(loader)))

    assert count() == 2
    assert count(even_batches=False) == (2 if RANK == 0 else 1)


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self) -> None:
        self.read = False

    def __iter__(self):
        self.read = True
        return iter(torch.arange(16, dtype=torch.float32).view(8, 2))


@checks.add
def option_DataLoaderConfiguration_dispatch_batches():
    def reads(**options) -> bool:
        dataset = _Stream()
        config = DataLoaderConfiguration(**options)
        list(_fresh(dataloader_config=config).prepare(DataLoader(dataset, batch_size=2)))
        return dataset.read

    assert reads() == (RANK == 0)  # default for iterables: the main process reads, sends
    assert reads(dispatch_batches=False)


@checks.add
def option_Accelerator_rng_types():
    def draws(**kwargs) -> list[float]:
        accelerator = _fresh(**kwargs)
        loader = accelerator.prepare(DataLoader(TensorDataset(torch.arange(4)), batch_size=2))
        torch.manual_seed(100 + RANK)
        next(iter(loader))  # starting a pass synchronizes the chosen RNGs from the main process
        return accelerator.gather(torch.rand(1)).tolist()

    synced, free = draws(rng_types=["torch"]), draws()
    assert synced[0] == synced[1] and free[0] != free[1], (synced, free)


@checks.add
def option_GradientAccumulationPlugin_sync_each_batch():
    def first_micro_step_grads_agree(**options) -> bool:
        plugin = GradientAccumulationPlugin(num_steps=2, **options)
        accelerator = _fresh(gradient_accumulation_plugin=plugin)
        model = accelerator.prepare(_model())
        loader = accelerator.prepare(DataLoader(TensorDataset(torch.randn(8, 8)), batch_size=2))
        (x,) = next(iter(loader))
        with accelerator.accumulate(model):
            model(x).pow(2).mean().backward()
        grads = accelerator.gather(model.module[0].weight.grad[None])
        return torch.equal(grads[0], grads[1])

    assert first_micro_step_grads_agree(sync_each_batch=True)
    assert not first_micro_step_grads_agree()


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x):
        return torch.relu(self.linear(x))


def _blocks_model() -> nn.Module:
    torch.manual_seed(RANK)  # different on each rank, on purpose
    return nn.Sequential(_Block(), _Block(), nn.Linear(8, 2))


def _fsdp(**options) -> tuple[Accelerator, nn.Module]:
    accelerator = _fresh(fsdp_plugin=FullyShardedDataParallelPlugin(**options))
    model = _blocks_model()
    model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    return accelerator, model


def _sharded(module: nn.Module) -> int:
    from torch.distributed.fsdp import FSDPModule

    return sum(isinstance(m, FSDPModule) for m in module.modules())


def _is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


@checks.add
def option_Accelerator_fsdp_plugin():
    accelerator, model = _fsdp()
    assert accelerator.distributed_type.value == "FSDP" and _sharded(model) == 1
    assert _fresh().distributed_type.value == "MULTI_CPU"


WRAP_BLOCKS = {
    "auto_wrap_policy": "transformer_based_wrap",
    "transformer_cls_names_to_wrap": ["_Block"],
}


@checks.add
def option_FullyShardedDataParallelPlugin_auto_wrap_policy():
    assert _sharded(_fsdp(**WRAP_BLOCKS)[1]) == 3
    assert _sharded(_fsdp()[1]) == 1


@checks.add
def option_FullyShardedDataParallelPlugin_transformer_cls_names_to_wrap():
    options = dict(WRAP_BLOCKS, transformer_cls_names_to_wrap=["Linear"])
    assert _sharded(_fsdp(**options)[1]) == 4  # 3 Linear + root


@checks.add
def option_FullyShardedDataParallelPlugin_min_num_params():
    many = _sharded(_fsdp(auto_wrap_policy="size_based_wrap", min_num_params=10)[1])
    few = _sharded(_fsdp(auto_wrap_policy="size_based_wrap", min_num_params=10**6)[1])
    assert many > few, (many, few)


@checks.add
def option_FullyShardedDataParallelPlugin_reshard_after_forward():
    def block_sharded_after_forward(**options) -> bool:
        _, model = _fsdp(**WRAP_BLOCKS, **options)
        model(torch.randn(2, 8))
        return _is_dtensor(model[0].linear.weight)

    assert block_sharded_after_forward()
    assert not block_sharded_after_forward(reshard_after_forward=False)


@checks.add
def option_FullyShardedDataParallelPlugin_cpu_offload():
    from torch.distributed.fsdp import CPUOffloadPolicy

    _, model = _fsdp(cpu_offload=True)
    assert isinstance(model._get_fsdp_state()._fsdp_param_group.offload_policy, CPUOffloadPolicy)
    _, model = _fsdp()
    assert not isinstance(
        model._get_fsdp_state()._fsdp_param_group.offload_policy, CPUOffloadPolicy
    )


@checks.add
def option_FullyShardedDataParallelPlugin_mixed_precision_policy():
    def weight_dtype(**options) -> torch.dtype:
        _, model = _fsdp(**options)
        seen = []
        model[2].register_forward_hook(lambda m, _i, _o: seen.append(m.weight.dtype))
        model(torch.randn(2, 8))
        return seen[0]

    assert weight_dtype(mixed_precision_policy="bf16") == torch.bfloat16
    assert weight_dtype() == torch.float16  # follows the job's fp16


@checks.add
def option_FullyShardedDataParallelPlugin_state_dict_type():
    accelerator, model = _fsdp(state_dict_type="SHARDED_STATE_DICT")
    assert _is_dtensor(accelerator.get_state_dict(model)["2.weight"])
    accelerator, model = _fsdp()
    full = accelerator.get_state_dict(model)
    assert RANK != 0 or not _is_dtensor(full["2.weight"])


@checks.add
def option_FullyShardedDataParallelPlugin_activation_checkpointing():
    def wrapped(**options) -> int:
        _, model = _fsdp(**WRAP_BLOCKS, **options)
        return sum(hasattr(m, "_checkpoint_wrapped_module") for m in model.modules())

    assert wrapped(activation_checkpointing=True) == 2 and wrapped() == 0


@checks.add
def option_FullyShardedDataParallelPlugin_cpu_ram_efficient_loading():
    torch.manual_seed(0)
    main_weights = nn.Sequential(_Block(), _Block(), nn.Linear(8, 2)).state_dict()

    def matches_main(**options) -> bool:
        accelerator, model = _fsdp(**options)
        full = accelerator.get_state_dict(model)  # the full weights, on the main process
        answer = [RANK != 0 or all(torch.equal(full[k], main_weights[k]) for k in main_weights)]
        dist.broadcast_object_list(answer, src=0)
        return answer[0]

    assert matches_main(cpu_ram_efficient_loading=True)
    assert not matches_main()


@checks.add
def option_FullyShardedDataParallelPlugin_ignored_modules():
    def head_sharded(**options) -> bool:
        _, model = _fsdp(**options)
        return _is_dtensor(model[2].weight)

    assert not head_sharded(ignored_modules="2")
    assert head_sharded()


checks.run(RANK)
accelerator.end_training()
