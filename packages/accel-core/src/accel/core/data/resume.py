"""What a prepared dataloader needs to resume a pass exactly: the randomness it was drawn from.

A pass's order (the sampler's permutation, the workers' base seed, an iterable dataset's
shuffle) is drawn when the pass starts, from the loader's own generators (the sampler's, the
``DataLoader``'s, the dataset's) or, without one, from torch's global RNG. A checkpoint taken
in the middle of a pass therefore records those sources *as they were when the pass started*
(:func:`capture_pass_rng`); the resumed pass puts them back before it draws anything
(:func:`restore_pass_rng`), so it draws the same order, skips the batches already used, and
only then restores the RNG states of the moment of the save.

Example:
    >>> import torch
    >>> loader = torch.utils.data.DataLoader(range(6), batch_size=2, shuffle=True)
    >>> snapshot = capture_pass_rng(loader)
    >>> first = [b.tolist() for b in loader]
    >>> restore_pass_rng(loader, snapshot)
    >>> [b.tolist() for b in loader] == first
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from accel.core.data.tracking import _batch_sampler_chain

__all__ = [
    "PendingResume",
    "capture_global_rng_states",
    "capture_pass_rng",
    "is_hf_dataset",
    "order_generators",
    "restore_pass_rng",
    "set_global_rng_states",
]
from accel.state.process_logging import library_logger

logger = library_logger(__name__)


@dataclass
class PendingResume:
    """How the next pass of a loader resumes a pass a checkpoint was taken in.

    ``seen``: batches of that pass already used (skipped); ``pass_rng``: the pass's order
    sources as they were at its start (:func:`capture_pass_rng`); ``fetch_rng``: the global
    RNG states just before the saved run read the first unused batch (a prepared loader reads
    one batch ahead, so that read came before the save); ``restore``: puts back the RNG states
    of the moment of the save, called once the pass has that batch in hand.

    Example:
        >>> PendingResume(seen=3).seen
        3
    """

    seen: int = 0
    pass_rng: dict[str, Any] | None = None
    fetch_rng: dict[str, Any] | None = None
    restore: Callable[[], None] | None = None


def _datasets(loader: Any) -> Iterator[Any]:
    """The loader's dataset, then what it wraps (``IterableDatasetShard.dataset``)."""
    dataset, seen = getattr(loader, "dataset", None), set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        yield dataset
        dataset = getattr(dataset, "dataset", None)


def order_generators(loader: Any) -> list[torch.Generator]:
    """Every ``torch.Generator`` a pass of ``loader`` may draw its order from, in a fixed order:
    the ``DataLoader``'s, its samplers', its (wrapped) datasets'.

    Example:
        >>> g = torch.Generator()
        >>> loader = torch.utils.data.DataLoader(range(4), shuffle=True, generator=g)
        >>> order_generators(loader) == [g]
        True
    """
    found: list[torch.Generator] = []
    candidates = [getattr(loader, "generator", None)]
    for level in _batch_sampler_chain(loader):
        candidates += [getattr(level, "generator", None)]
        candidates += [getattr(getattr(level, "sampler", None), "generator", None)]
    candidates += [getattr(dataset, "generator", None) for dataset in _datasets(loader)]
    for candidate in candidates:
        if isinstance(candidate, torch.Generator) and all(candidate is not g for g in found):
            found.append(candidate)
    return found


def capture_global_rng_states() -> dict[str, Any]:
    """The states of torch's, numpy's and ``random``'s global generators.

    Example:
        >>> sorted(capture_global_rng_states())
        ['numpy', 'python', 'torch']
    """
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_global_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`capture_global_rng_states` returned.

    Example:
        >>> set_global_rng_states(capture_global_rng_states())
    """
    torch.set_rng_state(states["torch"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "python" in states:
        random.setstate(_as_random_state(states["python"]))


def is_hf_dataset(dataset: Any) -> bool:
    """Whether ``dataset`` is a 🤗 ``datasets`` dataset (checked without importing it).

    Their ``state_dict()`` is a read position (after a pass: its end) and
    ``load_state_dict`` applies to every later pass, so accel does not use it; their order is
    a function of their seed and ``set_epoch``, so reading the pass again is exact.

    Example:
        >>> is_hf_dataset(range(3))
        False
    """
    return type(dataset).__module__.split(".")[0] == "datasets"


def _stateful_dataset(loader: Any) -> Any:
    """The innermost dataset with ``state_dict``/``load_state_dict`` (🤗 datasets excepted)."""
    found = None
    for dataset in _datasets(loader):
        if (
            callable(getattr(dataset, "state_dict", None))
            and callable(getattr(dataset, "load_state_dict", None))
            and not is_hf_dataset(dataset)
        ):
            found = dataset
    return found


def capture_pass_rng(loader: Any) -> dict[str, Any]:
    """The sources a pass of ``loader`` draws its order from, as they are now.

    Holds torch's global RNG state (and numpy's and ``random``'s, which a dataset or a
    ``worker_init_fn`` may use), the state of each of :func:`order_generators`, and, for a
    dataset with ``state_dict``/``load_state_dict``, its state. Only plain data and tensors,
    so it can be saved in a checkpoint and loaded with ``weights_only=True``.

    Example:
        >>> loader = torch.utils.data.DataLoader(range(4), shuffle=True)
        >>> sorted(capture_pass_rng(loader))
        ['generators', 'numpy', 'python', 'torch']
    """
    snapshot = capture_global_rng_states()
    snapshot["generators"] = [g.get_state() for g in order_generators(loader)]
    dataset = _stateful_dataset(loader)
    if dataset is not None:
        snapshot["dataset"] = dataset.state_dict()
    return snapshot


def restore_pass_rng(loader: Any, snapshot: dict[str, Any], global_rngs: bool = True) -> None:
    """Put back the order sources of ``loader`` recorded by :func:`capture_pass_rng`
    (with ``global_rngs=False``, only the loader's own generators and dataset state).

    Raises ``ValueError`` when the loader has a different number of generators than when the
    snapshot was taken (the script builds its dataloader differently from the saved run).

    Example:
        >>> loader = torch.utils.data.DataLoader(range(4), shuffle=True)
        >>> restore_pass_rng(loader, capture_pass_rng(loader))
    """
    generators = order_generators(loader)
    saved = list(snapshot.get("generators", []))
    if len(saved) != len(generators):
        raise ValueError(
            f"cannot resume the dataloader pass exactly: the checkpoint recorded {len(saved)} "
            f"generator(s) its order was drawn from, but this dataloader has {len(generators)} "
            "(sampler, DataLoader and dataset generators). Build and prepare the dataloader the "
            "same way as in the run that saved the checkpoint."
        )
    if global_rngs:
        set_global_rng_states(snapshot)
    for generator, state in zip(generators, saved):
        generator.set_state(state)
    if "dataset" in snapshot:
        dataset = _stateful_dataset(loader)
        if dataset is None:
            raise ValueError(
                "cannot resume the dataloader pass exactly: the checkpoint holds the state of a "
                "dataset with state_dict/load_state_dict, but this dataloader's dataset "
                f"({type(loader.dataset).__qualname__}) has none."
            )
        dataset.load_state_dict(snapshot["dataset"])


def _as_random_state(state: Any) -> tuple[Any, ...]:
    """``random.setstate`` wants tuples; a checkpoint round trip may give lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
