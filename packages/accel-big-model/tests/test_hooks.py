"""Hooks: attach/remove, AlignDevicesHook offload, prefetching."""

from __future__ import annotations

import torch
from bm_models import ids, make_tiny
from torch import nn

from accel.big_model import (
    AlignDevicesHook,
    CpuOffload,
    ModelHook,
    SequentialHook,
    UserCpuOffloadHook,
    add_hook_to_module,
    align_device_hooks,
    attach_align_device_hook,
    attach_align_device_hook_on_blocks,
    remove_hook_from_module,
    remove_hook_from_submodules,
)
from accel.big_model.prefetch import OffloadPrefetcher, prefetch_enabled


class AddOne(ModelHook):
    def pre_forward(self, module, *args, **kwargs):
        return (args[0] + 1, *args[1:]), kwargs


class Times(ModelHook):
    def __init__(self, k):
        self.k = k

    def post_forward(self, module, output):
        return output * self.k


def test_add_and_remove_hook_restores_forward():
    lin = nn.Linear(3, 3)
    x = torch.randn(2, 3)
    expected = lin(x)
    add_hook_to_module(lin, AddOne())
    assert torch.allclose(lin(x), lin._old_forward(x + 1))
    add_hook_to_module(lin, Times(2))  # replaces
    assert torch.equal(lin(x), expected * 2)
    add_hook_to_module(lin, AddOne(), append=True)
    assert isinstance(lin._hf_hook, SequentialHook) and len(lin._hf_hook.hooks) == 2
    remove_hook_from_module(lin)
    assert not hasattr(lin, "_hf_hook") and not hasattr(lin, "_old_forward")
    assert torch.equal(lin(x), expected)


def test_no_grad_hook():
    class NoGrad(ModelHook):
        no_grad = True

    lin = add_hook_to_module(nn.Linear(2, 2), NoGrad())
    assert not lin(torch.ones(1, 2)).requires_grad


def test_remove_hooks_recursively():
    model = make_tiny()
    attach_align_device_hook(model, "cpu")
    assert align_device_hooks(model)
    remove_hook_from_submodules(model)
    assert align_device_hooks(model) == []


def test_align_devices_hook_offload_is_bitwise_and_detach_restores():
    model = make_tiny()
    x = ids()
    with torch.no_grad():
        expected = model(x)
    attach_align_device_hook(model, "cpu", offload=True, weights_map=model.state_dict())
    assert model.blocks[0].fc1.weight.device.type == "meta"
    assert model.blocks[0].scale.device.type == "cpu"  # buffers stay unless offload_buffers
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    assert model.blocks[1].fc2.weight.device.type == "meta"  # dropped again after forward
    remove_hook_from_submodules(model)
    assert model.blocks[0].fc1.weight.device.type == "cpu"


def test_offload_buffers():
    model = make_tiny()
    x = ids()
    with torch.no_grad():
        expected = model(x)
    attach_align_device_hook(
        model, "cpu", offload=True, offload_buffers=True, weights_map=model.state_dict()
    )
    assert model.blocks[0].scale.device.type == "meta"
    assert model.blocks[0].shift.device.type == "cpu"  # non-persistent buffers cannot be offloaded
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_on_blocks_mixed():
    model = make_tiny(tie=False)
    x = ids()
    with torch.no_grad():
        expected = model(x)
    names = ["embed", "blocks", "norm", "head"]
    attach_align_device_hook_on_blocks(
        model,
        execution_device=dict.fromkeys(["", *names], "cpu"),
        offload={"embed": False, "blocks": True, "norm": False, "head": True},
        weights_map=model.state_dict(),
    )
    assert model.embed.weight.device.type == "cpu" and model.head.weight.device.type == "meta"
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_prefetcher_loads_next_module_in_background():
    model = make_tiny(tie=False)
    x = ids()
    with torch.no_grad():
        expected = model(x)
    prefetcher = OffloadPrefetcher()
    add_hook_to_module(model, AlignDevicesHook(io_same_device=True, prefetcher=prefetcher))
    attach_align_device_hook(
        model, "cpu", offload=True, weights_map=model.state_dict(), prefetcher=prefetcher
    )
    prefetcher.root = (
        model._hf_hook.hooks[0] if isinstance(model._hf_hook, SequentialHook) else model._hf_hook
    )
    offloaded = [h for h in align_device_hooks(model) if h.offload]
    prefetcher.seed(offloaded)

    served = []
    original_take = prefetcher.take

    def spy(hook):
        result = original_take(hook)
        served.append(result is not None)
        return result

    prefetcher.take = spy
    with torch.no_grad():
        for _ in range(3):
            assert torch.equal(model(x), expected)
    assert served.count(True) >= 2 * (len(offloaded) - 1)
    assert prefetcher._pending is None  # nothing held once a forward returns
    prefetcher.close()


def test_prefetch_env_switch(monkeypatch):
    monkeypatch.setenv("ACCEL_OFFLOAD_PREFETCH", "0")
    assert prefetch_enabled() is False and prefetch_enabled(True) is True
    monkeypatch.delenv("ACCEL_OFFLOAD_PREFETCH")
    assert prefetch_enabled() is True


def test_cpu_offload_hook_and_user_hook():
    lin = nn.Linear(2, 2)
    add_hook_to_module(lin, CpuOffload("cpu"))
    user = UserCpuOffloadHook(lin, lin._hf_hook)
    assert lin(torch.ones(1, 2)).shape == (1, 2)
    user.offload()
    user.remove()
    assert not hasattr(lin, "_hf_hook")


def test_hooks_match_accelerate():
    accelerate_hooks = __import__("pytest").importorskip("accelerate.hooks")
    ours, theirs = make_tiny(), make_tiny()
    x = ids()
    attach_align_device_hook(ours, "cpu", offload=True, weights_map=ours.state_dict())
    accelerate_hooks.attach_align_device_hook(
        theirs, "cpu", offload=True, weights_map=theirs.state_dict()
    )
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
