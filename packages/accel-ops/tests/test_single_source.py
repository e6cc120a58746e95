"""copy_tensor_to_devices on one process (the 2-process path runs in tests-integration)."""

from __future__ import annotations

import pytest
import torch

from accel.ops import copy_tensor_to_devices


def test_one_process_returns_the_tensor_and_refuses_none() -> None:
    assert torch.equal(copy_tensor_to_devices(torch.arange(3)), torch.arange(3))
    with pytest.raises(ValueError, match="all passed None"):
        copy_tensor_to_devices(None)
    with pytest.raises(TypeError, match="list"):
        copy_tensor_to_devices([1, 2])  # type: ignore[arg-type]
