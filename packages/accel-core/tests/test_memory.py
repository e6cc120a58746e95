"""``find_executable_batch_size``, ``release_memory`` and out-of-memory detection, on CPU."""

from __future__ import annotations

import pytest
import torch

from accel.core import find_executable_batch_size, release_memory
from accel.core.memory import should_reduce_batch_size


def _oom_above(limit: int, tried: list[int], error=None):
    def train(batch_size, *args, **kwargs):
        tried.append(batch_size)
        if batch_size > limit:
            raise error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return batch_size, args, kwargs

    return train


def test_shrinks_by_ten_percent_until_it_fits():
    tried: list[int] = []
    train = find_executable_batch_size(_oom_above(80, tried), starting_batch_size=128)
    assert train("a", k=1) == (73, ("a",), {"k": 1})
    sizes = [128]
    while sizes[-1] > 80:
        sizes.append(int(sizes[-1] * 0.9))
    assert tried == sizes


def test_decorator_form_and_found_size_is_kept():
    tried: list[int] = []
    train = find_executable_batch_size(starting_batch_size=16)(_oom_above(10, tried))
    assert train()[0] == 10  # 16 -> 14 -> 12 -> 10
    tried.clear()
    assert train()[0] == 10
    assert tried == [10]


def test_real_oom_tensor_allocation_on_cpu():
    tried: list[int] = []

    @find_executable_batch_size(starting_batch_size=1 << 20)
    def allocate(batch_size):
        tried.append(batch_size)
        if batch_size > 1000:
            # What torch raises when the CPU allocator fails.
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                "memory: you tried to allocate 1099511627776 bytes."
            )
        return torch.zeros(batch_size).numel()

    assert allocate() <= 1000
    assert len(tried) > 1


@pytest.mark.parametrize(
    "message",
    [
        "CUDA out of memory. Tried to allocate 20.00 MiB",
        "XPU out of memory. Tried to allocate 1 GiB",
        "NPU out of memory. Tried to allocate 1 GiB",
        "MPS backend out of memory (MPS allocated: 1 GB)",
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes",
        "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if ...",
    ],
)
def test_oom_messages_are_recognised(message):
    assert should_reduce_batch_size(RuntimeError(message))


def test_other_errors_are_not_oom():
    assert not should_reduce_batch_size(RuntimeError("shape mismatch"))
    assert not should_reduce_batch_size(ValueError("out of memory."))
    assert should_reduce_batch_size(torch.OutOfMemoryError("anything"))


def test_non_oom_error_propagates_untouched():
    tried: list[int] = []
    boom = KeyError("missing column")
    train = find_executable_batch_size(_oom_above(0, tried, error=boom), starting_batch_size=8)
    with pytest.raises(KeyError) as info:
        train()
    assert info.value is boom
    assert tried == [8]


def test_reaching_zero_raises_clearly():
    tried: list[int] = []
    train = find_executable_batch_size(_oom_above(0, tried), starting_batch_size=4)
    with pytest.raises(RuntimeError, match=r"No executable batch size found.*reached zero"):
        train()
    assert tried == [4, 3, 2, 1]


def test_custom_reduction():
    tried: list[int] = []
    state = {"bs": 64}

    def halve():
        state["bs"] //= 2
        return state["bs"]

    train = find_executable_batch_size(
        _oom_above(10, tried), starting_batch_size=64, reduce_batch_size_fn=halve
    )
    assert train()[0] == 8
    assert tried == [64, 32, 16, 8]


def test_passing_batch_size_yourself_is_an_error():
    @find_executable_batch_size(starting_batch_size=8)
    def train(batch_size, model):
        return batch_size

    with pytest.raises(TypeError, match="batch size as its first argument"):
        train(8, "model")


def test_release_memory():
    a, b = torch.ones(10), torch.ones(10)
    a, b = release_memory(a, b)
    assert a is None and b is None
