"""Training on XLA's device (``xla:0``, PJRT_DEVICE=CPU) reaches the CPU's weights."""

from __future__ import annotations

import pytest
import torch
import torch_xla.debug.metrics as metrics
from _xla_loops import job, make_objects, run_epochs, train

from accel.core import Accelerator
from accel.state import DistributedType


def _assert_close(xla: dict[str, torch.Tensor], cpu: dict[str, torch.Tensor]) -> None:
    assert xla.keys() == cpu.keys()
    for name in cpu:
        assert xla[name].device.type == "cpu"
        torch.testing.assert_close(xla[name], cpu[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_loop_reaches_the_cpu_weights(monkeypatch: pytest.MonkeyPatch, accumulation: int) -> None:
    with job(monkeypatch, xla=False):
        accelerator, cpu, cpu_losses = train(accumulation, clip=1.0)
        assert accelerator.distributed_type == DistributedType.NO
    with job(monkeypatch, xla=True):
        accelerator, xla, xla_losses = train(accumulation, clip=1.0)
        assert accelerator.distributed_type == DistributedType.XLA
        assert str(accelerator.device) == "xla:0"
    _assert_close(xla, cpu)
    assert xla_losses == pytest.approx(cpu_losses, rel=1e-4)
    assert xla_losses[-1] < xla_losses[0]


def test_prepare_picks_the_xla_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    with job(monkeypatch, xla=True):
        accelerator = Accelerator()
        model, optimizer, loader, _ = make_objects()
        optimizer, model, loader = accelerator.prepare(optimizer, model, loader)
        assert type(accelerator.strategy).__name__ == "XLAStrategy"
        assert type(optimizer).__name__ == "XLAOptimizer"
        assert type(loader).__name__ == "XLADataLoaderShard"
        assert accelerator.num_processes == 1 and accelerator.process_index == 0
        # module.to("xla") made new parameters; the optimizer (prepared first) follows them
        owned = {id(p) for p in model.parameters()}
        stepped = [p for group in optimizer.param_groups for p in group["params"]]
        assert all(id(p) in owned for p in stepped) and len(stepped) == len(owned)
        assert all(p.device.type == "xla" for p in stepped)
        inputs, _ = next(iter(loader))
        assert inputs.device.type == "xla"


def test_accumulation_runs_one_graph_per_optimizer_step(monkeypatch: pytest.MonkeyPatch) -> None:
    with job(monkeypatch, xla=True):
        accelerator = Accelerator(gradient_accumulation_steps=4)
        model, optimizer, loader, scheduler = accelerator.prepare(*make_objects())
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=1)  # warm-up
        compiles = metrics.metric_data("CompileTime")[0]
        executions = metrics.metric_data("ExecuteTime")[0]
        run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=2)
        # 8 batches per epoch, 4 micro-steps per optimizer step: 2 steps per epoch; the
        # trailing loss.item() of run_epochs runs nothing new (the step already ran it).
        assert metrics.metric_data("ExecuteTime")[0] - executions == 2 * 2
        assert metrics.metric_data("CompileTime")[0] == compiles  # no graph is new


def test_bf16_runs_the_forward_in_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    with job(monkeypatch, xla=True):
        accelerator = Accelerator(mixed_precision="bf16")
        model, optimizer, loader, scheduler = accelerator.prepare(*make_objects())
        seen: list[torch.dtype] = []
        model[0].register_forward_hook(lambda module, args, output: seen.append(output.dtype))
        losses = run_epochs(accelerator, model, optimizer, loader, scheduler, epochs=3)
        assert set(seen) == {torch.bfloat16}
        assert model(torch.ones(1, 8, device=accelerator.device)).dtype == torch.float32
        assert model[0].weight.dtype == torch.float32  # the weights stay fp32
        assert losses[-1] < losses[0]


def test_fp16_on_xla_is_refused_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with job(monkeypatch, xla=True), pytest.raises(ValueError) as caught:
        Accelerator(mixed_precision="fp16")
    assert "runs on xla; use 'bf16' or 'no'" in str(caught.value)
    assert "\n" not in str(caught.value)
