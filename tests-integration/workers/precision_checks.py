"""fp16 mixed precision on 2 CPU processes, started by ``accel launch --mixed_precision fp16``.

The ``Accelerator()`` is built without arguments: fp16 must arrive from the launcher. Checks
that ``Linear`` really computes in float16 (forward hook), that an overflow on one rank skips
the step on both and halves the loss scale like the GPU scaler, and records the fp16 weights
after a few steps next to an fp32 run of the same data (compared in pytest).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from _harness import Checks
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from accel.core import Accelerator

RANK = int(os.environ["RANK"])
STEPS = 6
LR = 0.05
checks = Checks()
accelerator = Accelerator()


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


checks.run(RANK)
accelerator.end_training()
