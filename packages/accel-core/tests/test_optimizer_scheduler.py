"""``AcceleratedOptimizer`` and ``AcceleratedScheduler`` on their own, in one process."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

from accel.core import AcceleratedOptimizer, AcceleratedScheduler, Accelerator
from accel.state import GradientState

# Several tests step a scheduler without stepping its optimizer on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


def _param(value: float = 1.0, size: int = 3) -> nn.Parameter:
    return nn.Parameter(torch.full((size,), value))


def _scaled_backward(scaler: torch.amp.GradScaler, param: nn.Parameter) -> None:
    """Backward of ``sum(2 * param)`` through the scaler: the unscaled gradient is 2."""
    scaler.scale((2 * param).sum()).backward()


# --------------------------------------------------------------------------------------------
# AcceleratedOptimizer: delegation


def test_wrapper_is_an_optimizer_and_delegates():
    param = _param()
    inner = torch.optim.SGD([param], lr=0.5, momentum=0.9)
    wrapped = AcceleratedOptimizer(inner)
    assert isinstance(wrapped, torch.optim.Optimizer)
    assert wrapped.optimizer is inner
    assert wrapped.param_groups is inner.param_groups
    assert wrapped.state is inner.state
    assert wrapped.defaults is inner.defaults
    wrapped.param_groups[0]["lr"] = 0.25
    assert inner.param_groups[0]["lr"] == 0.25
    extra = _param()
    wrapped.add_param_group({"params": [extra]})
    assert len(inner.param_groups) == 2
    assert "SGD" in repr(wrapped)
    assert wrapped.step_was_skipped is False


def test_step_without_scaler():
    param = _param()
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.5))
    param.grad = torch.ones(3)
    wrapped.step()
    assert param.tolist() == [0.5, 0.5, 0.5]
    assert wrapped.step_was_skipped is False


def test_step_with_closure():
    param = _param()
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.5))

    def closure():
        wrapped.zero_grad()
        loss = param.sum()
        loss.backward()
        return loss

    loss = wrapped.step(closure)
    assert loss.item() == 3.0
    assert param.tolist() == [0.5, 0.5, 0.5]


def test_step_and_zero_grad_do_nothing_on_accumulation_steps():
    param = _param()
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.5))
    param.grad = torch.ones(3)
    GradientState()._set_sync_gradients(False)
    wrapped.step()
    wrapped.zero_grad()
    assert param.tolist() == [1.0, 1.0, 1.0]
    assert param.grad.tolist() == [1.0, 1.0, 1.0]
    GradientState()._set_sync_gradients(True)
    wrapped.step()
    assert param.tolist() == [0.5, 0.5, 0.5]


def test_zero_grad_set_to_none_semantics():
    param = _param()
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.5))
    param.grad = torch.ones(3)
    wrapped.zero_grad()  # default: set to None, as torch does
    assert param.grad is None
    param.grad = torch.ones(3)
    wrapped.zero_grad(set_to_none=False)
    assert param.grad is not None and param.grad.tolist() == [0.0, 0.0, 0.0]
    wrapped.zero_grad(set_to_none=True)
    assert param.grad is None


class _PlainZeroGrad(torch.optim.SGD):
    """An optimizer whose ``zero_grad`` takes no ``set_to_none``."""

    def zero_grad(self):  # type: ignore[override]
        super().zero_grad(set_to_none=False)


def test_zero_grad_of_an_optimizer_without_set_to_none():
    param = _param()
    wrapped = AcceleratedOptimizer(_PlainZeroGrad([param], lr=0.5))
    param.grad = torch.ones(3)
    wrapped.zero_grad()
    assert param.grad.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="set_to_none"):
        wrapped.zero_grad(set_to_none=True)


def test_state_dict_round_trip():
    param = _param()
    inner = torch.optim.Adam([param], lr=0.1)
    wrapped = AcceleratedOptimizer(inner)
    for _ in range(3):
        param.grad = torch.ones(3)
        wrapped.step()
    state = wrapped.state_dict()
    assert state["state"][0]["step"].item() == 3

    other_param = _param()
    other = AcceleratedOptimizer(torch.optim.Adam([other_param], lr=0.7))
    other.load_state_dict(state)
    assert other.param_groups[0]["lr"] == 0.1
    assert torch.equal(other.state[other_param]["exp_avg"], inner.state[param]["exp_avg"])
    # Both continue identically.
    other_param.data.copy_(param.data)
    param.grad = torch.ones(3)
    other_param.grad = torch.ones(3)
    wrapped.step()
    other.step()
    assert torch.equal(param, other_param)


def test_existing_state_is_kept_on_wrapping():
    param = _param()
    inner = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    param.grad = torch.ones(3)
    inner.step()
    buffer = inner.state[param]["momentum_buffer"].clone()
    wrapped = AcceleratedOptimizer(inner, device=torch.device("cpu"))
    assert torch.equal(wrapped.state[param]["momentum_buffer"], buffer)


def test_pickling():
    param = _param()
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.3))
    restored = pickle.loads(pickle.dumps(wrapped))
    assert isinstance(restored, AcceleratedOptimizer)
    assert restored.param_groups[0]["lr"] == 0.3
    assert restored.step_was_skipped is False
    assert restored.gradient_state.sync_gradients is True


def test_train_and_eval_are_forwarded():
    class WithModes(torch.optim.SGD):
        mode = None

        def train(self):
            self.mode = "train"

        def eval(self):
            self.mode = "eval"

    inner = WithModes([_param()], lr=0.1)
    wrapped = AcceleratedOptimizer(inner)
    wrapped.eval()
    assert inner.mode == "eval"
    wrapped.train()
    assert inner.mode == "train"
    # Optimizers without modes are left alone.
    AcceleratedOptimizer(torch.optim.SGD([_param()], lr=0.1)).train()


# --------------------------------------------------------------------------------------------
# AcceleratedOptimizer with a GradScaler


def test_scaler_skips_step_on_inf_gradients():
    param = _param()
    inner = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    wrapped = AcceleratedOptimizer(inner, scaler=scaler)

    _scaled_backward(scaler, param)
    param.grad[0] = float("inf")
    wrapped.step()
    assert wrapped.step_was_skipped is True
    assert param.tolist() == [1.0, 1.0, 1.0]
    assert scaler.get_scale() == 512.0  # backoff_factor 0.5
    assert "step" not in vars(inner)  # the temporary patch is gone

    wrapped.zero_grad()
    _scaled_backward(scaler, param)
    wrapped.step()
    assert wrapped.step_was_skipped is False
    torch.testing.assert_close(param.detach(), torch.full((3,), 0.8))  # 1 - 0.1 * 2
    assert scaler.get_scale() == 512.0
    assert "step" not in vars(inner)


def test_scaler_step_grows_scale_after_interval():
    param = _param()
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2)
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.0), scaler=scaler)
    for _ in range(2):
        wrapped.zero_grad()
        _scaled_backward(scaler, param)
        wrapped.step()
        assert not wrapped.step_was_skipped
    assert scaler.get_scale() == 8.0


def test_scheduler_created_before_wrapping_still_works_with_scaler():
    param = _param()
    inner = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(inner, step_size=1, gamma=0.5)
    patched = vars(inner).get("step")  # torch's LR scheduler wraps optimizer.step
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    wrapped = AcceleratedOptimizer(inner, scaler=scaler)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler.step() before optimizer.step()"
        for _ in range(2):
            wrapped.zero_grad()
            _scaled_backward(scaler, param)
            wrapped.step()
            scheduler.step()
    assert vars(inner).get("step") is patched  # our temporary patch restored torch's
    assert scheduler.get_last_lr() == [0.25]
    # lr 1.0 then 0.5, gradient 2: 1 - 2 - 1
    torch.testing.assert_close(param.detach(), torch.full((3,), -2.0))


def test_scaler_through_accelerated_scheduler_skips_on_overflow():
    param = _param()
    inner = torch.optim.SGD([param], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    wrapped = AcceleratedOptimizer(inner, scaler=scaler)
    scheduler = AcceleratedScheduler(
        torch.optim.lr_scheduler.StepLR(inner, step_size=1, gamma=0.5), wrapped
    )
    _scaled_backward(scaler, param)
    param.grad[1] = float("nan")
    wrapped.step()
    scheduler.step()
    assert wrapped.step_was_skipped
    assert scheduler.get_last_lr() == [1.0]  # no step after a skipped optimizer step
    wrapped.zero_grad()
    _scaled_backward(scaler, param)
    wrapped.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5]


def test_pickling_with_scaler():
    param = _param()
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0)
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.1), scaler=scaler)
    restored = pickle.loads(pickle.dumps(wrapped))
    assert restored.scaler.get_scale() == 16.0
    assert "step" not in vars(restored.optimizer)


def test_accelerator_reports_skipped_steps():
    accelerator = Accelerator()
    model = nn.Linear(2, 1)
    optimizer = accelerator.prepare(torch.optim.SGD(model.parameters(), lr=0.1))
    assert accelerator.optimizer_step_was_skipped is False
    optimizer._is_overflow = True
    assert accelerator.optimizer_step_was_skipped is True


# --------------------------------------------------------------------------------------------
# AcceleratedScheduler


def _scheduler(**kwargs):
    param = _param()
    inner = torch.optim.SGD([param], lr=1.0)
    optimizer = AcceleratedOptimizer(inner)
    scheduler = torch.optim.lr_scheduler.StepLR(inner, step_size=1, gamma=0.5)
    return optimizer, AcceleratedScheduler(scheduler, [optimizer], **kwargs)


def test_scheduler_delegates():
    _, scheduler = _scheduler()
    assert scheduler.get_last_lr() == [1.0]
    assert scheduler.step_size == 1  # attribute of the wrapped StepLR
    assert scheduler.gamma == 0.5
    state = scheduler.state_dict()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5]
    scheduler.load_state_dict(state)
    assert scheduler.last_epoch == 0
    with pytest.raises(AttributeError):
        scheduler.no_such_attribute  # noqa: B018


def test_scheduler_does_not_step_on_accumulation_steps():
    _, scheduler = _scheduler()
    GradientState()._set_sync_gradients(False)
    scheduler.step()
    assert scheduler.get_last_lr() == [1.0]
    GradientState()._set_sync_gradients(True)
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5]


def test_scheduler_without_optimizer_sync_steps_always():
    _, scheduler = _scheduler(step_with_optimizer=False)
    GradientState()._set_sync_gradients(False)
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5]


def test_scheduler_respects_total_steps():
    param = _param()
    inner = torch.optim.SGD([param], lr=1.0)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(inner, max_lr=1.0, total_steps=3)
    scheduler = AcceleratedScheduler(onecycle, [AcceleratedOptimizer(inner)])
    for _ in range(5):  # OneCycleLR raises past total_steps; the wrapper stops instead
        scheduler.step()
    assert onecycle._step_count == 4


def test_scheduler_pickles():
    _, scheduler = _scheduler()
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored.get_last_lr() == [1.0]


def test_accelerator_with_a_scaler_unscales_before_clipping():
    # A scaler without fp16 autocast, so that the result compares exactly with fp32 SGD.
    accelerator = Accelerator()
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    reference = nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert optimizer.scaler is accelerator.scaler

    x = torch.randn(4, 3)
    accelerator.backward(model(x).sum())
    assert model.bias.grad.item() == pytest.approx(4.0 * 1024.0)  # still scaled
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm=1e9)
    assert model.bias.grad.item() == pytest.approx(4.0)  # unscaled before clipping
    optimizer.step()
    optimizer.zero_grad()
    assert not accelerator.optimizer_step_was_skipped

    reference(x).sum().backward()
    ref_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm=1e9)
    ref_optimizer.step()
    torch.testing.assert_close(norm, ref_norm)
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want)

    accelerator.backward(model(x).sum() * float("inf"))
    optimizer.step()
    assert accelerator.optimizer_step_was_skipped
    assert accelerator.scaler.get_scale() == 512.0
