"""What ``random_states_{rank}.pkl`` holds: the step, the global RNG states, and where each
prepared dataloader stands, so a resumed run draws the same numbers and batches.

Example:
    >>> states = rng_states(step=3, dataloaders=[])
    >>> set_rng_states(states)
    >>> states["step"]
    3
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from accel.core.checkpoint.layout import DATALOADER_KEY
from accel.core.data.resume import (
    PendingResume,
    _datasets,
    _stateful_dataset,
    capture_pass_rng,
    is_hf_dataset,
    restore_pass_rng,
)
from accel.state import GradientState
from accel.state.process_logging import warn_on_main_process

__all__ = ["restore_dataloader", "rng_states", "set_rng_states"]


def rng_states(step: int, dataloaders: Sequence[Any]) -> dict[str, Any]:
    """The step counter, this process's RNG states and the dataloaders' positions.

    Example:
        >>> sorted(rng_states(0, []))[:2]
        ['accel_dataloaders', 'numpy_random_seed']
    """
    states: dict[str, Any] = {
        "step": step,
        "random_state": random.getstate(),
        "numpy_random_seed": np.random.get_state(),
        "torch_manual_seed": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["torch_cuda_manual_seed"] = torch.cuda.get_rng_state_all()
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        states["torch_xpu_manual_seed"] = xpu.get_rng_state_all()
    states[DATALOADER_KEY] = [_position(loader) for loader in dataloaders]
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Put the global RNG states of :func:`rng_states` back.

    Example:
        >>> set_rng_states(rng_states(0, []))
    """
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    if "torch_cuda_manual_seed" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])
    xpu = getattr(torch, "xpu", None)
    if "torch_xpu_manual_seed" in states and xpu is not None and xpu.is_available():
        xpu.set_rng_state_all(states["torch_xpu_manual_seed"])


def _position(loader: Any) -> dict[str, Any]:
    """Where ``loader`` stands: its epoch, how many batches of the pass in progress were used,
    and what that pass drew its order from, as it was when the pass started (between passes:
    as it is now). A ``skip_first_batches`` copy in the middle of a pass speaks for it."""
    active = GradientState().dataloader_references
    copy = loader._active_copy() if getattr(loader, "_active_copy", None) is not None else None
    if copy is not None and any(ref is copy for ref in active):
        loader = copy
    epoch = int(getattr(loader, "_epoch", 0))
    pending = getattr(loader, "_resume", None)
    if pending is not None:  # loaded but not iterated since
        position = {"epoch": epoch, "batches_yielded": int(pending.seen)}
        for key in ("pass_rng", "fetch_rng"):
            if getattr(pending, key) is not None:
                position[key] = getattr(pending, key)
        return position
    mid_pass = any(ref is loader for ref in active)
    if mid_pass and getattr(loader, "_pass_rng", None) is not None:
        position = {
            "epoch": epoch,
            "batches_yielded": int(getattr(loader, "_batches_yielded", 0)),
            "pass_rng": loader._pass_rng,
        }
        if getattr(loader, "_fetch_rng", None) is not None:
            position["fetch_rng"] = loader._fetch_rng
        return position
    return {"epoch": epoch, "batches_yielded": 0, "pass_rng": capture_pass_rng(loader)}


def _warn_if_replayed(loader: Any, seen: int) -> None:
    """A resumed pass over an iterable dataset without ``state_dict`` replays the stream."""
    if not isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return
    if _stateful_dataset(loader) is not None or any(map(is_hf_dataset, _datasets(loader))):
        return
    warn_on_main_process(
        f"resuming a dataloader over {type(loader.dataset).__qualname__}, an iterable dataset "
        f"without state_dict()/load_state_dict(): the resumed pass reads the stream again from "
        f"the start of the pass and drops the {seen} batch(es) already used. This is exact only "
        "if the stream yields the same samples in the same order given the same RNG states "
        "(torch, numpy, random, its generator, set_epoch); give the dataset "
        "state_dict()/load_state_dict() to make it exact in every case.",
        stacklevel=3,
    )


def restore_dataloader(loader: Any, position: Mapping[str, Any], states: Mapping[str, Any]) -> None:
    """Make the next pass of ``loader`` draw the order of the checkpoint's pass and start at
    the first batch not used before the save.

    Example:
        >>> restore_dataloader(loader, states["accel_dataloaders"][0], states)  # doctest: +SKIP
    """
    if not hasattr(loader, "_take_resume"):
        return
    loader._epoch = int(position.get("epoch", 0))
    seen = int(position.get("batches_yielded", 0))
    pass_rng = position.get("pass_rng")
    if seen > 0:
        _warn_if_replayed(loader, seen)
        loader._resume = PendingResume(
            seen=seen,
            pass_rng=pass_rng,
            fetch_rng=position.get("fetch_rng"),
            restore=lambda: set_rng_states(states),
        )
        return
    loader._resume = None
    if pass_rng is not None:
        # Saved between passes: the global RNGs are the checkpoint's already (and the script
        # may draw from them before the next pass, as the saved run did); put back only the
        # loader's own generators and dataset state.
        restore_pass_rng(loader, pass_rng, global_rngs=False)
