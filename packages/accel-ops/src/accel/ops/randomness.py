"""Seeding of every random number generator a training script draws from."""

from __future__ import annotations

import operator
import random
import sys

import numpy as np
import torch

__all__ = ["set_seed"]

# numpy's legacy global generator takes seeds in [0, 2**32); torch and `random` take more,
# so numpy's range is the one every seed must fit.
_SEED_LIMIT = 2**32


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise TypeError(
            f"set_seed expects an int seed, got {type(seed).__qualname__} ({seed!r})."
        )
    value = operator.index(seed)
    if not 0 <= value < _SEED_LIMIT:
        raise ValueError(
            f"set_seed got seed={value}, outside [0, 2**32) = [0, {_SEED_LIMIT - 1}]: "
            "numpy's generator accepts no other seed."
        )
    return value


def set_seed(seed: int, device_specific: bool = False, deterministic: bool = False) -> None:
    """Seed Python's ``random``, numpy's global generator and torch on every device.

    With ``device_specific``, each process adds its process index to ``seed``, so processes
    draw different numbers while the run stays reproducible. With ``deterministic``, torch is
    told to use deterministic algorithms only (``torch.use_deterministic_algorithms(True)``),
    which can be slower. ``seed`` must be an int in ``[0, 2**32)``, numpy's range, after the
    process index is added.

    Example:
        >>> set_seed(42)
        >>> first = torch.rand(1)
        >>> set_seed(42)
        >>> torch.equal(first, torch.rand(1))
        True
    """
    seed = _check_seed(seed)
    if device_specific:
        from accel.state import PartialState

        process_index = PartialState().process_index
        if seed + process_index >= _SEED_LIMIT:
            raise ValueError(
                f"set_seed got seed={seed} with device_specific=True: adding process index "
                f"{process_index} gives {seed + process_index}, outside [0, 2**32) = "
                f"[0, {_SEED_LIMIT - 1}], numpy's seed range. Pass a smaller seed."
            )
        seed += process_index
    random.seed(seed)
    np.random.seed(seed)
    # torch.manual_seed also seeds CUDA, MPS, XPU and registered out-of-tree devices (NPU).
    torch.manual_seed(seed)
    if "torch_xla" in sys.modules:
        # Only when the script already uses torch-xla: importing it has side effects.
        import torch_xla.core.xla_model as xm

        xm.set_rng_state(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
