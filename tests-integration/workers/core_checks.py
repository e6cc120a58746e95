"""accel.core's Accelerator in a real 2-process job (gloo, CPU), and its 1-process twin.

Two modes, chosen by ``CORE_IT_MODE``:

- ``distributed`` (default, under ``torchrun --nproc_per_node 2``): trains the scenarios on
  half batches per process (plain, gradient accumulation, bf16, FSDP2 with full and sharded
  state dicts) and records the final weights; checks ``no_sync``, ``gather_for_metrics``,
  ``join_uneven_inputs``, ``check_trigger`` and the errors of bad input.
- ``reference`` (plain ``python``, one process): first runs the migration guide's script
  (``migration_script.py``) in this fresh process, then trains the same scenarios on full
  batches and records the weights the 2-process run must reproduce.

Writes ``rank<N>.json`` into ``ACCEL_IT_OUT`` (see ``_harness.py``). Cross-rank comparisons use
raw torch collectives, independent of the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _harness import Checks, refused
from torch.utils.data import DataLoader, TensorDataset

from accel.core import Accelerator, DataLoaderConfiguration, FullyShardedDataParallelPlugin
from accel.state import DistributedType, reset_state

MODE = os.environ.get("CORE_IT_MODE", "distributed")
RANK = int(os.environ.get("RANK", "0"))
SAMPLES, GLOBAL_BATCH, STEPS = 48, 8, 6  # 6 global batches of 8: 4 per process on 2 processes
MIGRATION_SCRIPT = Path(__file__).with_name("migration_script.py")
# Checks that also run (on full batches) in the 1-process reference.
REFERENCE_CHECKS = (
    "migration_script_single_process",
    "train_plain",
    "train_accumulate",
    "train_bf16",
    "train_blocks",
)
checks = Checks()


class Block(torch.nn.Module):
    """A residual MLP block: the unit FSDP2 shards on its own."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.up = torch.nn.Linear(width, 2 * width)
        self.down = torch.nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.tanh(self.up(x)))


class BlockModel(torch.nn.Module):
    """Embedding layer, two ``Block``s and a 1-output head (its weight has 1 row: uneven shards)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.ModuleList([Block(8), Block(8)])
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def make_dataset() -> TensorDataset:
    """48 regression samples (4 features, 1 target), the same on every process."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(SAMPLES, 4, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(
        SAMPLES, 1, generator=generator
    )
    return TensorDataset(inputs, targets)


def make_mlp() -> torch.nn.Module:
    """A small float32 MLP with fixed initial weights."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def make_blocks() -> BlockModel:
    """The block model with fixed initial weights."""
    torch.manual_seed(2)
    return BlockModel()


def fresh_accelerator(**options) -> Accelerator:
    """A new Accelerator after forgetting the previous one's state (the process group stays)."""
    reset_state()
    return Accelerator(**options)


def everyone(value):
    """``value`` from every rank, in rank order (raw torch, not the code under test)."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def flat(state_dict: dict) -> dict[str, list[float]]:
    """A state dict as JSON: name -> flattened float values."""
    return {name: tensor.detach().float().flatten().tolist() for name, tensor in state_dict.items()}


def train(accelerator: Accelerator, model: torch.nn.Module, accumulate: bool = False):
    """Run ``STEPS`` steps of SGD with momentum on the prepared data; return the prepared model.

    Each process's batch is ``GLOBAL_BATCH / num_processes`` samples, so one step of the job
    always sees the same 8 samples.
    """
    loader = DataLoader(make_dataset(), batch_size=GLOBAL_BATCH // accelerator.num_processes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = 0
    for inputs, targets in loader:
        context = accelerator.accumulate(model) if accumulate else contextlib.nullcontext()
        with context:
            loss = F.mse_loss(model(inputs), targets)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        steps += 1
    assert steps == STEPS, steps
    return model


def record_weights(name: str, accelerator: Accelerator, model: torch.nn.Module) -> None:
    """Record the unwrapped model's weights; on several processes they must agree exactly."""
    weights = flat(accelerator.unwrap_model(model).state_dict())
    ranks = everyone(weights)
    assert all(r == ranks[0] for r in ranks), f"{name}: ranks hold different weights"
    checks.record(name, weights)


@checks.add
def migration_script_single_process():
    """The guide's script in this fresh process (reference mode only), report kept in values."""
    out = Path(tempfile.mkdtemp(prefix="accel-it-migration-1proc-"))
    saved = os.environ["ACCEL_IT_OUT"]
    os.environ["ACCEL_IT_OUT"] = str(out)
    try:
        runpy.run_path(str(MIGRATION_SCRIPT), run_name="__main__")
    finally:
        os.environ["ACCEL_IT_OUT"] = saved
    report = json.loads((out / "rank0.json").read_text())
    assert report["checks"] == {"finished_training": "ok"}, report["checks"]
    checks.record("migration", report["values"])


@checks.add
def accelerator_forms_multi_cpu_group():
    accelerator = fresh_accelerator()
    assert accelerator.distributed_type == DistributedType.MULTI_CPU, accelerator.distributed_type
    assert (accelerator.num_processes, accelerator.process_index) == (2, RANK)
    assert dist.get_backend() == "gloo" and dist.get_world_size() == 2


@checks.add
def train_plain():
    accelerator = fresh_accelerator()
    model = train(accelerator, make_mlp())
    if accelerator.num_processes > 1:
        assert isinstance(model, torch.nn.parallel.DistributedDataParallel), type(model)
    record_weights("weights_plain", accelerator, model)


@checks.add
def train_accumulate():
    accelerator = fresh_accelerator(gradient_accumulation_steps=2)
    model = train(accelerator, make_mlp(), accumulate=True)
    record_weights("weights_accumulate", accelerator, model)


@checks.add
def train_bf16():
    accelerator = fresh_accelerator(mixed_precision="bf16")
    model = train(accelerator, make_mlp())
    assert next(accelerator.unwrap_model(model).parameters()).dtype == torch.float32
    record_weights("weights_bf16", accelerator, model)


@checks.add
def train_blocks():
    """Reference mode only: the block model trained by one process, for the FSDP runs."""
    accelerator = fresh_accelerator()
    model = train(accelerator, make_blocks())
    record_weights("weights_blocks", accelerator, model)


def local_grads(model: torch.nn.Module) -> dict[str, list[float]]:
    """This rank's gradients of ``model`` (unwrapped), as JSON."""
    inner = model.module if hasattr(model, "module") else model
    return {name: p.grad.flatten().tolist() for name, p in inner.named_parameters()}


@checks.add
def no_sync_skips_all_reduce_inside_accumulation():
    accelerator = fresh_accelerator(gradient_accumulation_steps=2)
    model = make_mlp()
    twin = make_mlp()  # plain copy: what this rank's gradients are without any all-reduce
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    data = make_dataset()
    micro = [data.tensors[0][8 * i + 4 * RANK : 8 * i + 4 * RANK + 4] for i in range(2)]
    targets = [data.tensors[1][8 * i + 4 * RANK : 8 * i + 4 * RANK + 4] for i in range(2)]
    for i in range(2):
        with accelerator.accumulate(model):
            accelerator.backward(F.mse_loss(model(micro[i]), targets[i]))
            (F.mse_loss(twin(micro[i]), targets[i]) / 2).backward()
            mine, alone = local_grads(model), local_grads(twin)
            ranks = everyone(mine)
            if i == 0:
                assert not accelerator.sync_gradients
                assert ranks[0] != ranks[1], "gradients equal across ranks inside no_sync"
                assert mine == alone, "inside no_sync the gradient must be this rank's own"
            else:
                assert accelerator.sync_gradients
                assert ranks[0] == ranks[1], "gradients differ across ranks after the sync step"
                expected = {n: torch.tensor(v) for n, v in alone.items()}
                for tensor in expected.values():
                    dist.all_reduce(tensor)
                    tensor /= 2
                for name, values in mine.items():
                    torch.testing.assert_close(torch.tensor(values), expected[name])
            optimizer.step()
            optimizer.zero_grad()
    # explicit no_sync: one backward without communication, then one that reduces both
    with accelerator.no_sync(model):
        accelerator.backward(F.mse_loss(model(micro[0]), targets[0]))
    ranks = everyone(local_grads(model))
    assert ranks[0] != ranks[1], "no_sync(model) all-reduced the gradients"


def fsdp_accelerator(**plugin_options) -> Accelerator:
    """An Accelerator with an FSDP2 plugin built from ``plugin_options``."""
    accelerator = fresh_accelerator(fsdp_plugin=FullyShardedDataParallelPlugin(**plugin_options))
    assert accelerator.distributed_type == DistributedType.FSDP, accelerator.distributed_type
    assert accelerator.is_fsdp2
    return accelerator


def assert_blocks_sharded(model: torch.nn.Module) -> None:
    """Every block and the root were given to ``fully_shard`` (their class says FSDP)."""
    for module in (model, *model.blocks):
        assert type(module).__name__.startswith("FSDP"), type(module)


def record_full_state_dict(name: str, accelerator: Accelerator, model: torch.nn.Module) -> None:
    """``get_state_dict`` gathers the full weights on rank 0 (Accelerate: rank 0 only)."""
    state = accelerator.get_state_dict(model)
    if RANK == 0:
        assert all(type(t) is torch.Tensor for t in state.values()), {
            k: type(t) for k, t in state.items()
        }
        checks.record(name, flat(state))
    checks.record(f"{name}_keys", sorted(state))


@checks.add
def fsdp_transformer_wrap_full_state_dict():
    accelerator = fsdp_accelerator(
        auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["Block"]
    )
    model = train(accelerator, make_blocks())
    assert_blocks_sharded(model)
    record_full_state_dict("weights_fsdp_transformer_wrap", accelerator, model)


@checks.add
def fsdp_size_wrap_full_state_dict():
    # 100 parameters: each Block (280) and, nested inside, its Linears (144, 136) qualify
    accelerator = fsdp_accelerator(auto_wrap_policy="size_based_wrap", min_num_params=100)
    model = train(accelerator, make_blocks())
    assert_blocks_sharded(model)
    for block in model.blocks:
        assert type(block.up).__name__.startswith("FSDP"), type(block.up)
        assert type(block.down).__name__.startswith("FSDP"), type(block.down)
    assert not type(model.embed).__name__.startswith("FSDP"), type(model.embed)
    record_full_state_dict("weights_fsdp_size_wrap", accelerator, model)


@checks.add
def fsdp_sharded_state_dict_pieces():
    from torch.distributed.tensor import DTensor

    accelerator = fsdp_accelerator(
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["Block"],
        state_dict_type="SHARDED_STATE_DICT",
    )
    model = train(accelerator, make_blocks())
    state = accelerator.get_state_dict(model)
    assert state and all(isinstance(t, DTensor) for t in state.values()), {
        k: type(t).__name__ for k, t in state.items()
    }
    pieces = {name: tensor.to_local() for name, tensor in state.items()}
    for name, tensor in state.items():
        assert pieces[name].shape[0] <= (tensor.shape[0] + 1) // 2, (name, pieces[name].shape)
    ranks = everyone({name: piece.tolist() for name, piece in pieces.items()})
    full = {}
    for name, tensor in state.items():
        parts = [torch.tensor(r[name]).reshape(-1, *tensor.shape[1:]) for r in ranks]
        full[name] = torch.cat(parts)
        assert full[name].shape == tensor.shape, (name, full[name].shape, tensor.shape)
    checks.record("weights_fsdp_sharded", flat(full))


@checks.add
def fsdp_checkpoint_functions_round_trip():
    """save/load_fsdp_model and _optimizer (Accelerate's names and layout) on FSDP2 models,
    full and sharded layouts: weights zeroed after the save come back exactly."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    from accel.core import (
        load_fsdp_model,
        load_fsdp_optimizer,
        save_fsdp_model,
        save_fsdp_optimizer,
    )

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    folder = everyone(tempfile.mkdtemp(prefix="fsdp_ckpt_"))[0]
    for layout, expected in (
        ("FULL_STATE_DICT", {"pytorch_model_fsdp.bin", "optimizer.bin"}),
        ("SHARDED_STATE_DICT", {"pytorch_model_fsdp_0", "optimizer_0"}),
    ):
        accelerator = fsdp_accelerator(
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["Block"],
            state_dict_type=layout,
        )
        plugin = accelerator.state.fsdp_plugin
        model = train(accelerator, make_blocks())
        optimizer = accelerator._optimizers[0]
        out = os.path.join(folder, layout)
        before = flat(get_model_state_dict(model, options=full))
        optim_before = get_optimizer_state_dict(model, optimizer.optimizer, options=full)
        save_fsdp_model(plugin, accelerator, model, out)
        save_fsdp_optimizer(plugin, accelerator, optimizer, model, out)
        assert set(os.listdir(out)) == expected, (layout, os.listdir(out))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        for state in optimizer.optimizer.state.values():
            state["momentum_buffer"].zero_()
        load_fsdp_model(plugin, accelerator, model, out)
        load_fsdp_optimizer(plugin, accelerator, optimizer, model, out)
        assert flat(get_model_state_dict(model, options=full)) == before, layout
        optim_after = get_optimizer_state_dict(model, optimizer.optimizer, options=full)
        if RANK == 0:
            for key, state in optim_before["state"].items():
                assert torch.equal(
                    state["momentum_buffer"], optim_after["state"][key]["momentum_buffer"]
                ), (layout, key)


def metrics_loader(accelerator: Accelerator) -> DataLoader:
    """13 samples ``[i, 100 + i]`` in batches of 4, prepared (even batches: the last wraps)."""
    values = torch.arange(13, dtype=torch.float32)
    data = TensorDataset(torch.stack([values, values + 100], dim=1))
    return accelerator.prepare(DataLoader(data, batch_size=4))


@checks.add
def gather_for_metrics_returns_the_dataset():
    accelerator = fresh_accelerator(dataloader_config=DataLoaderConfiguration(even_batches=True))
    loader = metrics_loader(accelerator)
    expected = torch.stack([torch.arange(13.0), torch.arange(13.0) + 100], dim=1)
    for _ in range(2):  # a second evaluation pass must give the same
        tensors, pairs, words = [], [], []
        for (batch,) in loader:
            tensors.append(accelerator.gather_for_metrics(batch))
            pairs.append(accelerator.gather_for_metrics({"x": batch[:, 0], "y": batch[:, 1]}))
            labels = [f"s{int(v)}" for v in batch[:, 0]]
            words.extend(accelerator.gather_for_metrics(labels, use_gather_object=True))
        assert torch.equal(torch.cat(tensors), expected), torch.cat(tensors)
        assert torch.equal(torch.cat([p["x"] for p in pairs]), expected[:, 0])
        assert torch.equal(torch.cat([p["y"] for p in pairs]), expected[:, 1])
        assert words == [f"s{i}" for i in range(13)], words


@checks.add
def device_map_across_devices_refused():
    accelerator = fresh_accelerator()
    model = make_mlp()
    model.hf_device_map = {"0": "cpu", "2": "disk"}
    refused(
        lambda: accelerator.prepare(model),
        "device_map",
        accepted="preparing a model spread over two devices did not raise",
    )


@checks.add
def split_batches_size_not_divisible_refused():
    accelerator = fresh_accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))
    refused(
        lambda: accelerator.prepare(DataLoader(make_dataset(), batch_size=3)),
        *("3", "2", "batch size"),
        accepted="split_batches with batch size 3 on 2 processes did not raise",
    )


@checks.add
def check_trigger_seen_on_every_rank():
    accelerator = fresh_accelerator()
    assert accelerator.check_trigger() is False
    if RANK == 1:
        accelerator.set_trigger()
    assert accelerator.check_trigger() is True
    assert accelerator.check_trigger() is False, "the trigger was not reset"


@checks.add
def join_uneven_inputs_lets_both_ranks_finish():
    """Last: if it hung, only this check is lost (the launcher's timeout ends the job)."""
    accelerator = fresh_accelerator()
    model = make_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    # 9 samples in batches of 2: 5 batches, dealt 3 to rank 0 and 2 to rank 1 when uneven
    loader = DataLoader(TensorDataset(make_dataset().tensors[0][:9]), batch_size=2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = 0
    with accelerator.join_uneven_inputs([model], even_batches=False):
        for (inputs,) in loader:
            accelerator.backward(model(inputs).pow(2).mean())
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
    assert everyone(steps) == [3, 2], everyone(steps)
    assert loader.batch_sampler.even_batches is True, "even_batches was not restored"
    weights = flat(accelerator.unwrap_model(model).state_dict())
    ranks = everyone(weights)
    assert ranks[0] == ranks[1], "weights differ across ranks after join"


if MODE == "reference":
    checks._checks = [(n, f) for n, f in checks._checks if n in REFERENCE_CHECKS]
elif MODE == "distributed":
    checks._checks = [
        (n, f)
        for n, f in checks._checks
        if n not in ("migration_script_single_process", "train_blocks")
    ]
else:
    raise SystemExit(f"CORE_IT_MODE must be 'distributed' or 'reference', not {MODE!r}")
checks.run(RANK)
reset_state()
if dist.is_initialized():
    dist.destroy_process_group()
