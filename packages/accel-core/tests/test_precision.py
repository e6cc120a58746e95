"""Mixed precision on CPU (bf16): autocast forward, fp32 outputs, unwrapping, helpers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from accel.core import Accelerator, AutocastKwargs, GradScalerKwargs, PrecisionType
from accel.core.precision import (
    autocast_context,
    check_mixed_precision,
    cpu_fp16_missing,
    make_grad_scaler,
    unwrap_forward,
    wrap_forward_in_autocast,
)

CPU = torch.device("cpu")


class Probe(nn.Module):
    """Records the dtype of the matmul inside ``forward``; returns a nested structure."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        y = self.linear(x)
        self.seen.append(y.dtype)
        return {"out": y, "extra": (y * 2, [y.sum()]), "count": 1}


def _all_dtypes(output) -> set[torch.dtype]:
    return {output["out"].dtype, output["extra"][0].dtype, output["extra"][1][0].dtype}


# --------------------------------------------------------------------------------------------
# prepared models under bf16


def test_prepared_model_runs_under_autocast_with_fp32_outputs():
    accelerator = Accelerator(mixed_precision="bf16")
    model = accelerator.prepare(Probe())
    output = model(torch.randn(2, 4))
    assert model.seen == [torch.bfloat16]
    assert _all_dtypes(output) == {torch.float32}
    assert output["count"] == 1
    assert model.linear.weight.dtype == torch.float32  # weights stay fp32


def test_bf16_training_step_keeps_fp32_weights_and_grads():
    accelerator = Accelerator(mixed_precision="bf16")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    assert accelerator.scaler is None
    x = torch.randn(32, 4)
    y = x.sum(dim=1, keepdim=True)
    losses = []
    for _ in range(20):
        output = model(x)
        assert output.dtype == torch.float32
        loss = nn.functional.mse_loss(output, y)
        accelerator.backward(loss)
        assert all(p.grad.dtype == torch.float32 for p in model.parameters())
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_forward_matches_accelerate():
    import accelerate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3))
    theirs = copy.deepcopy(model)
    x = torch.randn(5, 8)
    ours = Accelerator(mixed_precision="bf16").prepare(model)
    try:
        reference = accelerate.Accelerator(mixed_precision="bf16", cpu=True).prepare(theirs)
        got, want = ours(x), reference(x)
    finally:  # Accelerate's own singletons must not leak into other tests
        accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
        accelerate.state.GradientState._reset_state()
    assert got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want)


def test_accelerator_autocast_context():
    accelerator = Accelerator(mixed_precision="bf16")
    a = torch.ones(2, 2)
    with accelerator.autocast():
        assert (a @ a).dtype == torch.bfloat16
    assert (a @ a).dtype == torch.float32
    with accelerator.autocast(autocast_handler=AutocastKwargs(enabled=False)):
        assert (a @ a).dtype == torch.float32


def test_unwrap_model_without_fp32_wrapper_restores_forward():
    accelerator = Accelerator(mixed_precision="bf16")
    original = Probe()
    class_forward = type(original).forward
    model = accelerator.prepare(original)
    assert "forward" in vars(model)
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    assert unwrapped is original
    assert "forward" not in vars(unwrapped)
    assert not hasattr(unwrapped, "_original_forward")
    assert unwrapped.forward.__func__ is class_forward
    output = unwrapped(torch.randn(1, 4))
    assert unwrapped.seen[-1] == torch.float32
    assert _all_dtypes(output) == {torch.float32}


def test_unwrap_model_keeps_fp32_wrapper_by_default():
    accelerator = Accelerator(mixed_precision="bf16")
    model = accelerator.prepare(Probe())
    unwrapped = accelerator.unwrap_model(model)
    unwrapped(torch.randn(1, 4))
    assert unwrapped.seen[-1] == torch.bfloat16


def test_autocast_kwargs_disabled():
    accelerator = Accelerator(
        mixed_precision="bf16", kwargs_handlers=[AutocastKwargs(enabled=False)]
    )
    model = accelerator.prepare(Probe())
    model(torch.randn(1, 4))
    assert model.seen == [torch.float32]
    with accelerator.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_no_mixed_precision_leaves_forward_alone():
    accelerator = Accelerator()
    model = accelerator.prepare(Probe())
    assert "forward" not in vars(model)
    model(torch.randn(1, 4))
    assert model.seen == [torch.float32]


def test_preparing_twice_does_not_wrap_twice():
    accelerator = Accelerator(mixed_precision="bf16")
    model = Probe()
    accelerator.prepare(model)
    wrapped_forward = vars(model)["forward"]
    accelerator.prepare_model(model)
    assert vars(model)["forward"] is wrapped_forward


def test_deepcopy_of_a_prepared_model_calls_its_own_weights():
    accelerator = Accelerator(mixed_precision="bf16")
    model = accelerator.prepare(nn.Linear(3, 1))
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.weight.zero_()
        clone.bias.zero_()
    x = torch.ones(1, 3)
    assert clone(x).abs().sum().item() == 0.0
    assert model(x).abs().sum().item() != 0.0


# --------------------------------------------------------------------------------------------
# the helpers


def test_wrap_forward_of_an_instance_attribute_forward():
    model = nn.Linear(2, 2)
    calls = []

    def custom(x):
        calls.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return x @ model.weight.t()

    model.forward = custom
    wrap_forward_in_autocast(model, "bf16", CPU)
    assert model(torch.ones(1, 2)).dtype == torch.float32
    assert calls == [torch.bfloat16]
    unwrap_forward(model)
    assert model.forward is custom
    assert model(torch.ones(1, 2)).dtype == torch.float32
    assert calls[-1] is None


def test_wrap_forward_ignores_no_and_is_idempotent():
    model = nn.Linear(2, 2)
    wrap_forward_in_autocast(model, "no", CPU)
    assert "forward" not in vars(model)
    wrap_forward_in_autocast(model, "bf16", CPU)
    first = vars(model)["forward"]
    wrap_forward_in_autocast(model, "bf16", CPU)
    assert vars(model)["forward"] is first
    unwrap_forward(model)
    unwrap_forward(model)  # a second call is harmless
    assert "forward" not in vars(model)


def test_autocast_context_modes():
    a = torch.ones(2, 2)
    with autocast_context("no", CPU):
        assert (a @ a).dtype == torch.float32
    with autocast_context("bf16", CPU):
        assert (a @ a).dtype == torch.bfloat16
    with autocast_context("bf16", CPU, AutocastKwargs(enabled=False)):
        assert (a @ a).dtype == torch.float32


@pytest.mark.parametrize(
    ("given", "expected"),
    [("no", "no"), ("NO", "no"), ("bf16", "bf16"), (PrecisionType.BF16, "bf16")],
)
def test_check_mixed_precision_accepts(given, expected):
    assert check_mixed_precision(given, CPU) == expected


def test_check_mixed_precision_names_the_source():
    with pytest.raises(ValueError, match="MY_SOURCE='int8'"):
        check_mixed_precision("int8", CPU, source="MY_SOURCE")


def test_check_mixed_precision_fp16_on_cpu_is_accepted():
    assert check_mixed_precision("fp16", CPU) == "fp16"
    assert cpu_fp16_missing() == ""


def test_make_grad_scaler():
    assert make_grad_scaler("no", CPU) is None
    assert make_grad_scaler("bf16", CPU) is None
    scaler = make_grad_scaler("fp16", CPU, GradScalerKwargs(init_scale=8.0, growth_interval=3))
    assert isinstance(scaler, torch.amp.GradScaler)
    assert scaler.get_scale() == 8.0
    assert scaler.get_growth_interval() == 3
