from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from accel.ops.randomness import set_seed


def draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_set_seed_reproduces_random_numpy_and_torch():
    set_seed(1234)
    first = draw()
    set_seed(1234)
    assert draw() == first
    set_seed(4321)
    assert draw() != first


@pytest.mark.parametrize("seed", [0, 2**32 - 1, np.int64(7)])
def test_set_seed_accepts_numpy_range(seed):
    set_seed(seed)
    first = draw()
    set_seed(int(seed))
    assert draw() == first


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40])
def test_set_seed_out_of_range_names_value_and_limit(seed):
    with pytest.raises(ValueError) as info:
        set_seed(seed)
    message = str(info.value)
    assert str(seed) in message
    assert "2**32" in message
    assert "numpy" in message


@pytest.mark.parametrize("seed", [1.5, "42", None, True])
def test_set_seed_non_int_names_value(seed):
    with pytest.raises(TypeError) as info:
        set_seed(seed)
    assert repr(seed) in str(info.value)
    assert type(seed).__name__ in str(info.value)


@pytest.fixture
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_set_seed_deterministic(restore_determinism):
    torch.use_deterministic_algorithms(False)
    set_seed(3)
    assert not torch.are_deterministic_algorithms_enabled()
    set_seed(3, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()


def test_set_seed_device_specific_adds_process_index():
    from accel.state import PartialState

    process_index = PartialState().process_index
    set_seed(100, device_specific=True)
    first = draw()
    set_seed(100 + process_index)
    assert draw() == first
