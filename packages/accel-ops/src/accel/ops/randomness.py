"""Seeding of every random number generator a training script draws from."""

from __future__ import annotations

import operator
import random
import sys
from typing import Protocol, SupportsIndex, cast

import numpy as np
import torch

from accel.state.enums import RNGType

__all__ = ["set_seed", "synchronize_rng_state", "synchronize_rng_states"]

# numpy's legacy global generator takes seeds in [0, 2**32); torch and `random` take more,
# so numpy's range is the one every seed must fit.
_SEED_LIMIT = 2**32


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise TypeError(f"set_seed expects an int seed, got {type(seed).__qualname__} ({seed!r}).")
    value = operator.index(cast(SupportsIndex, seed))
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
        import torch_xla.core.xla_model as xm  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

        xm.set_rng_state(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


class _DeviceRandom(Protocol):
    """What ``torch.<device>`` modules (``torch.cuda``, ``torch.xpu``, ...) offer for RNG state."""

    def is_available(self) -> bool: ...
    def get_rng_state(self) -> torch.Tensor: ...
    def set_rng_state(self, new_state: torch.Tensor) -> None: ...


def _device_module(rng_type: RNGType) -> _DeviceRandom:
    module = getattr(torch, rng_type.value, None)
    if module is None or not hasattr(module, "get_rng_state") or not module.is_available():
        raise ValueError(
            f"rng_type={rng_type.value!r}: no {rng_type.value} device is available here, so its "
            "generator cannot be synchronized; drop it from rng_types"
        )
    return module


def _given(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        raise ValueError("rng_type='generator' needs the generator passed as generator=")
    return generator


def _read_state(rng_type: RNGType, generator: torch.Generator | None) -> torch.Tensor:
    if rng_type is RNGType.TORCH:
        return torch.get_rng_state()
    if rng_type is RNGType.GENERATOR:
        return _given(generator).get_state()
    if rng_type is RNGType.XLA:
        import torch_xla.core.xla_model as xm  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

        return torch.tensor([xm.get_rng_state()], dtype=torch.int64)
    return _device_module(rng_type).get_rng_state()


def _write_state(rng_type: RNGType, state: torch.Tensor, generator: torch.Generator | None) -> None:
    if rng_type is RNGType.TORCH:
        torch.set_rng_state(state)
    elif rng_type is RNGType.GENERATOR:
        _given(generator).set_state(state)
    elif rng_type is RNGType.XLA:
        import torch_xla.core.xla_model as xm  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

        xm.set_rng_state(int(state.item()))
    else:
        _device_module(rng_type).set_rng_state(state)


def _as_rng_type(value: object) -> RNGType:
    try:
        return RNGType(value)
    except ValueError:
        raise ValueError(
            f"rng_type={value!r} is not a known generator; use one of {', '.join(RNGType.list())}"
        ) from None


def synchronize_rng_states(
    rng_types: list[str | RNGType], generator: torch.Generator | None = None
) -> None:
    """Give every process the random state of process 0, for each generator in ``rng_types``.

    All states travel in one collective. ``"generator"`` refers to ``generator``.

    Example:
        >>> synchronize_rng_states(["torch"])  # after this, every process draws the same numbers
    """
    from accel.ops.collectives import broadcast
    from accel.state import PartialState

    kinds = [_as_rng_type(value) for value in rng_types]
    if not kinds or not PartialState().use_distributed:
        for kind in kinds:
            _read_state(kind, generator)  # same validation as in a distributed run
        return
    device = PartialState().device
    states = [_read_state(kind, generator) for kind in kinds]
    moved = [state.to(device) for state in states]
    broadcast(moved, from_process=0)
    for kind, state in zip(kinds, moved, strict=True):
        _write_state(kind, state.cpu(), generator)


def synchronize_rng_state(
    rng_type: str | RNGType | None = None, generator: torch.Generator | None = None
) -> None:
    """Give every process the random state of process 0 for one generator (default: torch's).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> synchronize_rng_state("generator", generator=g)
    """
    synchronize_rng_states([RNGType.TORCH if rng_type is None else rng_type], generator)
