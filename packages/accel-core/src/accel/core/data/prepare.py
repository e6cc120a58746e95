"""``prepare_data_loader`` and ``skip_first_batches``: rebuild a user's DataLoader for accel."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import torch
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler

from accel.core.data.iterable import IterableDatasetShard
from accel.core.data.loaders import DataLoaderDispatcher, DataLoaderShard, SkipDataLoader
from accel.core.data.samplers import (
    BatchSamplerShard,
    SeedableRandomSampler,
    SkipBatchSampler,
    _check_shard_position,
    _default_generator_device,
)
from accel.core.data.tracking import get_sampler
from accel.state import PartialState, RNGType, is_datasets_available

__all__ = ["prepare_data_loader", "skip_first_batches"]

# Decided by the new sampler / batch sampler / dataset shard, never copied from the old loader.
_REBUILT = frozenset(
    {"self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"}
)


def _loader_kwargs(dataloader: DataLoader) -> dict[str, Any]:
    """The other ``DataLoader`` settings of ``dataloader`` (workers, collate_fn, pinning, ...)."""
    kwargs = {}
    for name, parameter in inspect.signature(DataLoader.__init__).parameters.items():
        if name in _REBUILT or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        kwargs[name] = getattr(dataloader, name, parameter.default)
    return kwargs


def _normalize_rng_types(rng_types: Sequence[str | RNGType] | None) -> list[RNGType] | None:
    if rng_types is None:
        return None
    if isinstance(rng_types, (str, RNGType)):
        rng_types = [rng_types]
    normalized = []
    for value in rng_types:
        try:
            normalized.append(RNGType(value))
        except ValueError:
            raise ValueError(
                f"rng_types contains {value!r}, which is not a generator accel can synchronize; "
                f"use values from {RNGType.list()}."
            ) from None
    return normalized


def _split_batch_size(dataloader: DataLoader, num_processes: int) -> int:
    size = dataloader.batch_size
    if size is None:
        holder = dataloader.batch_sampler
        if holder is None and isinstance(dataloader.sampler, BatchSampler):
            holder = dataloader.sampler
        size = getattr(holder, "batch_size", None)
    if size is None:
        raise ValueError(
            "split_batches=True cuts each batch into num_processes pieces, so it needs a batch "
            f"size: the DataLoader has batch_size=None and its batch sampler "
            f"({type(dataloader.batch_sampler).__name__}) has no batch_size attribute. Give the "
            "DataLoader a batch_size, or the batch sampler a batch_size attribute, or pass "
            "split_batches=False."
        )
    if size % num_processes != 0:
        raise ValueError(
            f"split_batches=True cuts each batch of the DataLoader into num_processes="
            f"{num_processes} equal pieces, but its batch size {size} is not a multiple of "
            f"{num_processes}. Use a batch size that is a multiple of {num_processes} (for "
            f"example {max(num_processes, size - size % num_processes)}), or pass "
            "split_batches=False so each process gets whole batches."
        )
    return size


def _missing_batches_error(
    dataloader: DataLoader, purpose: str = "prepare_data_loader shards batches across processes"
) -> ValueError:
    return ValueError(
        f"{purpose}, but this DataLoader makes no "
        "batches: it has batch_size=None and no batch_sampler, so it yields single samples. "
        "Give it a batch_size (or a batch_sampler), or use it unprepared."
    )


def _seeded_generator_from_global_rng() -> torch.Generator:
    generator = torch.Generator(device=_default_generator_device())
    # Seeded from torch's global generator, so `set_seed` makes the shuffling reproducible.
    generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
    return generator


def _is_hf_iterable_dataset(dataset: Any) -> TypeGuard[Any]:
    """Whether ``dataset`` is a Hugging Face ``datasets.IterableDataset`` (typed ``Any``: the
    optional package is not a dependency)."""
    if not is_datasets_available():
        return False
    from datasets import IterableDataset as HFIterableDataset  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

    return isinstance(dataset, HFIterableDataset)


def prepare_data_loader(
    dataloader: DataLoader,
    device: torch.device | str | None = None,
    num_processes: int | None = None,
    process_index: int | None = None,
    split_batches: bool = False,
    put_on_device: bool = False,
    rng_types: Sequence[str | RNGType] | None = None,
    dispatch_batches: bool | None = None,
    even_batches: bool = True,
    slice_fn_for_dispatch: Callable[..., Any] | None = None,
    use_seedable_sampler: bool = False,
    data_seed: int | None = None,
    non_blocking: bool = False,
    use_stateful_dataloader: bool = False,
) -> DataLoader:
    """Rebuild ``dataloader`` so that this process gets only its share of the batches.

    ``num_processes`` and ``process_index`` default to :class:`~accel.state.PartialState`'s.
    A map-style dataset is sharded by batches (round-robin, or each batch cut in pieces with
    ``split_batches``); an iterable dataset by samples (:class:`IterableDatasetShard`). With
    ``dispatch_batches`` (the default for iterable datasets when ``put_on_device``), process 0
    alone loads the data and sends each process its slice (:class:`DataLoaderDispatcher`).

    Unless the loader drops its last batch, ``even_batches=True`` repeats samples from the
    start of the dataset to complete the last round, so all processes run the same number of
    equal batches; ``even_batches=False`` leaves it uneven.

    ``rng_types`` lists the generators made equal on all processes at the start of each pass
    (``"generator"`` is the sampler's or iterable dataset's generator; a shuffling sampler
    without one gets one seeded from torch's global generator). ``use_seedable_sampler``
    replaces a ``RandomSampler`` by :class:`SeedableRandomSampler` (seed ``data_seed``).
    ``put_on_device`` moves batches to ``device`` (``non_blocking`` copies when possible).

    Example:
        >>> loader = torch.utils.data.DataLoader(range(10), batch_size=2)
        >>> shard = prepare_data_loader(loader, num_processes=2, process_index=1)
        >>> [batch.tolist() for batch in shard]
        [[2, 3], [6, 7], [0, 1]]
    """
    if not isinstance(dataloader, DataLoader):
        raise TypeError(
            "prepare_data_loader expects a torch.utils.data.DataLoader, got "
            f"{type(dataloader).__qualname__}."
        )
    dataset = dataloader.dataset
    is_iterable = isinstance(dataset, IterableDataset)
    if dispatch_batches is None:
        dispatch_batches = bool(put_on_device) and is_iterable
    if dispatch_batches and not put_on_device:
        raise ValueError(
            "prepare_data_loader(dispatch_batches=True) sends batches from process 0 to the "
            "device of each process, so it needs put_on_device=True; got put_on_device="
            f"{put_on_device!r}."
        )
    state = PartialState()
    num_processes = state.num_processes if num_processes is None else num_processes
    process_index = state.process_index if process_index is None else process_index
    _check_shard_position("prepare_data_loader", num_processes, process_index)
    if split_batches:
        _split_batch_size(dataloader, num_processes)

    sampler_is_batch_sampler = isinstance(dataloader.sampler, BatchSampler)
    index_batches = dataloader.sampler if sampler_is_batch_sampler else dataloader.batch_sampler
    synchronized_generator = None

    sampler = get_sampler(dataloader)
    if use_seedable_sampler and isinstance(sampler, RandomSampler):
        sampler = SeedableRandomSampler(
            data_source=sampler.data_source,
            replacement=sampler.replacement,
            num_samples=sampler._num_samples,
            generator=sampler.generator,
            data_seed=data_seed,
        )

    if num_processes != 1 and not dispatch_batches:
        if (
            _is_hf_iterable_dataset(dataset)
            and not split_batches
            and dataset.n_shards >= num_processes
        ):
            dataset = dataset.shard(num_shards=num_processes, index=process_index)
        elif is_iterable:
            if dataloader.batch_size is None:
                raise _missing_batches_error(dataloader)
            generator = getattr(dataset, "generator", None)
            if generator is not None:
                synchronized_generator = generator
            dataset = IterableDatasetShard(
                dataset,
                batch_size=dataloader.batch_size,
                drop_last=dataloader.drop_last,
                num_processes=num_processes,
                process_index=process_index,
                split_batches=split_batches,
            )
        else:
            if index_batches is None:
                raise _missing_batches_error(dataloader)
            if not use_seedable_sampler and hasattr(sampler, "generator"):
                if sampler.generator is None:
                    sampler.generator = _seeded_generator_from_global_rng()
                synchronized_generator = sampler.generator
            index_batches = BatchSamplerShard(
                index_batches,
                num_processes=num_processes,
                process_index=process_index,
                split_batches=split_batches,
                even_batches=even_batches,
            )

    rng_types = _normalize_rng_types(rng_types)
    if rng_types is not None and synchronized_generator is None:
        rng_types = [kind for kind in rng_types if kind is not RNGType.GENERATOR]

    kwargs = _loader_kwargs(dataloader)
    if is_iterable:
        kwargs["drop_last"] = dataloader.drop_last
        batch_size = dataloader.batch_size
        per_process = split_batches and not dispatch_batches
        kwargs["batch_size"] = (
            batch_size // num_processes if per_process and batch_size is not None else batch_size
        )
    elif sampler_is_batch_sampler:
        kwargs["sampler"] = index_batches
        kwargs["batch_size"] = None
    else:
        kwargs["batch_sampler"] = index_batches

    if dispatch_batches:
        kwargs.pop("generator", None)
        prepared: DataLoader = DataLoaderDispatcher(
            dataset,
            split_batches=split_batches,
            _drop_last=dataloader.drop_last,
            _non_blocking=non_blocking,
            slice_fn=slice_fn_for_dispatch,
            use_stateful_dataloader=use_stateful_dataloader,
            **kwargs,
        )
    else:
        prepared = DataLoaderShard(
            dataset,
            device=device if put_on_device else None,
            rng_types=rng_types,
            synchronized_generator=synchronized_generator,
            _drop_last=dataloader.drop_last,
            _non_blocking=non_blocking,
            use_stateful_dataloader=use_stateful_dataloader,
            **kwargs,
        )
    if use_seedable_sampler and isinstance(sampler, SeedableRandomSampler):
        prepared.set_sampler(sampler)
    return prepared


def skip_first_batches(dataloader: DataLoader, num_batches: int = 0) -> DataLoader:
    """A copy of ``dataloader`` whose next pass starts after its first ``num_batches`` batches.

    ``num_batches`` counts the batches this process sees (the steps of a training loop). For
    map-style datasets the skipped batches are never loaded (their indices are skipped); for
    iterable datasets (and with ``num_workers > 0``) they are loaded and discarded. The copy
    keeps the loader's epoch, so a seeded shuffle gives the same order as the pass being
    resumed. The copy skips on every pass (as Accelerate's does); after ``load_state``, the
    first pass of a copy of a prepared loader resumes that checkpoint's pass exactly (same
    order, RNG states put back at the first batch it yields), and when a pass of the copy
    ends, the original moves on to the next epoch.

    Example:
        >>> loader = torch.utils.data.DataLoader(range(8), batch_size=2)
        >>> [batch.tolist() for batch in skip_first_batches(loader, num_batches=3)]
        [[6, 7]]
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
        raise ValueError(
            f"skip_first_batches needs num_batches to be an int >= 0, got {num_batches!r}."
        )
    if not isinstance(dataloader, DataLoader):
        raise TypeError(
            "skip_first_batches expects a torch.utils.data.DataLoader, got "
            f"{type(dataloader).__qualname__}."
        )
    # The copy now positions the pass: the resume that load_state left pending on the
    # original moves to the copy (its order sources and RNG states), and must not skip a
    # second time when the original is iterated again.
    take_resume = getattr(dataloader, "_take_resume", None)
    pending = take_resume() if take_resume is not None else None
    dataset = dataloader.dataset
    is_iterable = isinstance(dataset, IterableDataset)
    sampler_is_batch_sampler = isinstance(dataloader.sampler, BatchSampler)
    kwargs = _loader_kwargs(dataloader)
    index_batches = dataloader.sampler if sampler_is_batch_sampler else dataloader.batch_sampler
    if is_iterable:
        kwargs["drop_last"] = dataloader.drop_last
        kwargs["batch_size"] = dataloader.batch_size
    elif sampler_is_batch_sampler:
        kwargs["sampler"] = index_batches
        kwargs["batch_size"] = None
    else:
        kwargs["batch_sampler"] = index_batches

    if isinstance(dataloader, (DataLoaderDispatcher, DataLoaderShard)):
        # The copy's first pass resumes like a pass after load_state: same order, the first
        # num_batches batches skipped (their indices, for a map-style dataset read in the
        # main process), the saved RNG states put back at the first batch it yields.
        if isinstance(dataloader, DataLoaderDispatcher):
            rebuilt: type[DataLoader] = DataLoaderDispatcher
            own = {"split_batches": dataloader.split_batches, "slice_fn": dataloader.slice_fn}
        else:
            rebuilt = DataLoaderShard
            own = {
                "device": dataloader.device,
                "rng_types": dataloader.rng_types,
                "synchronized_generator": dataloader.synchronized_generator,
            }
        copy = rebuilt(
            dataset,
            _drop_last=dataloader._drop_last,
            _non_blocking=dataloader._non_blocking,
            iteration=dataloader.iteration,
            **own,
            **kwargs,
        )
        if pending is not None:
            pending.seen = num_batches
            copy._resume = pending
        copy._skip_each_pass = num_batches
        copy._origin = weakref.ref(dataloader)
        dataloader._active_copy = weakref.ref(copy)
        return copy
    if not is_iterable:
        if index_batches is None:
            raise _missing_batches_error(dataloader, "skip_first_batches skips whole batches")
        skipping = SkipBatchSampler(index_batches, skip_batches=num_batches)
        kwargs["sampler" if sampler_is_batch_sampler else "batch_sampler"] = skipping
    if is_iterable:
        return SkipDataLoader(dataset, skip_batches=num_batches, **kwargs)
    return DataLoader(dataset, **kwargs)
