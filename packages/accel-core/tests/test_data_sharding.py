"""Sharded data loading in one process: each simulated rank's shard, compared with Accelerate.

Every table builds the shard of each of 2, 3 or 4 "processes" by passing ``num_processes`` and
``process_index`` explicitly, and checks that accel and the real ``accelerate`` hand each rank
the same indices.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from accelerate import data_loader as reference
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, SequentialSampler

from accel.core.data import (
    BatchSamplerShard,
    DataLoaderDispatcher,
    DataLoaderShard,
    IterableDatasetShard,
    SeedableRandomSampler,
    SkipBatchSampler,
    SkipDataLoader,
    get_sampler,
    prepare_data_loader,
    skip_first_batches,
)
from accel.state import GradientState

LENGTHS = range(26)
BATCH_SIZES = (1, 2, 3, 4)
PROCESS_COUNTS = (2, 3, 4)


class Stream(IterableDataset):
    """An iterable dataset of ``0 .. length - 1``."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __iter__(self):
        return iter(range(self.length))

    def __len__(self) -> int:
        return self.length


def _as_lists(batches) -> list[list[int]]:
    return [[int(i) for i in batch] for batch in batches]


def _both_batch_shards(length, batch_size, drop_last, n, split, even):
    """Per rank: (accel's batches, Accelerate's batches), or the error each raised."""
    results = []
    for rank in range(n):
        outcome = []
        for cls in (BatchSamplerShard, reference.BatchSamplerShard):
            batches = BatchSampler(SequentialSampler(range(length)), batch_size, drop_last)
            try:
                shard = cls(batches, n, rank, split_batches=split, even_batches=even)
                outcome.append((_as_lists(shard), len(shard)))
            except ValueError:
                outcome.append("ValueError")
        results.append(outcome)
    return results


# ----- BatchSamplerShard ----------------------------------------------------------------------


@pytest.mark.parametrize("n", PROCESS_COUNTS)
@pytest.mark.parametrize("split", [False, True])
def test_batch_sampler_shard_matches_accelerate(n: int, split: bool) -> None:
    for length, size, drop_last, even in itertools.product(
        LENGTHS, BATCH_SIZES, (False, True), (True, False)
    ):
        for rank, (ours, theirs) in enumerate(
            _both_batch_shards(length, size, drop_last, n, split, even)
        ):
            assert ours == theirs, (length, size, drop_last, even, rank, ours, theirs)


@pytest.mark.parametrize("n", PROCESS_COUNTS)
def test_batch_sampler_shard_covers_dataset_and_wraps_only_when_even(n: int) -> None:
    for length, size, even in itertools.product(range(1, 26), BATCH_SIZES, (True, False)):
        shards = [
            _as_lists(
                BatchSamplerShard(
                    BatchSampler(SequentialSampler(range(length)), size, False),
                    n,
                    rank,
                    even_batches=even,
                )
            )
            for rank in range(n)
        ]
        counts = Counter(i for shard in shards for batch in shard for i in batch)
        assert set(counts) == set(range(length)), (length, size, even)
        repeated = sum(counts.values()) - length
        if even:
            assert len({len(shard) for shard in shards}) == 1
            assert all(len(batch) == size for shard in shards for batch in shard)
            # duplicates come from the start of the dataset and only complete the last round
            assert repeated == -(-length // (size * n)) * size * n - length
        else:
            assert repeated == 0, (length, size, shards)


def test_batch_sampler_shard_free_size_batches_match_accelerate() -> None:
    """A custom batch sampler without ``batch_size`` (batches of any length)."""

    class Ragged:
        def __init__(self, count: int) -> None:
            self.count = count

        def __iter__(self):
            start = 0
            for k in range(self.count):
                yield list(range(start, start + 1 + k % 3))
                start += 1 + k % 3

        def __len__(self) -> int:
            return self.count

    for count, n, even in itertools.product(range(9), PROCESS_COUNTS, (True, False)):
        for rank in range(n):
            ours = list(BatchSamplerShard(Ragged(count), n, rank, even_batches=even))
            theirs = list(reference.BatchSamplerShard(Ragged(count), n, rank, even_batches=even))
            assert ours == theirs, (count, n, even, rank)


def test_split_batches_error_names_size_processes_and_fix() -> None:
    batches = BatchSampler(SequentialSampler(range(10)), 3, False)
    with pytest.raises(ValueError, match=r"batch size is 3.*num_processes=2|num_processes=2.*3"):
        BatchSamplerShard(batches, num_processes=2, process_index=0, split_batches=True)
    with pytest.raises(ValueError, match="process_index=2"):
        BatchSamplerShard(batches, num_processes=2, process_index=2)


def test_even_batches_false_with_split_and_short_last_batch_is_fine() -> None:
    batches = BatchSampler(SequentialSampler(range(5)), 4, False)
    shards = [_as_lists(BatchSamplerShard(batches, 2, r, True, even_batches=False)) for r in (0, 1)]
    assert shards == [[[0, 1], [4]], [[2, 3]]]


# ----- IterableDatasetShard -------------------------------------------------------------------


@pytest.mark.parametrize("n", PROCESS_COUNTS)
def test_iterable_dataset_shard_matches_accelerate(n: int) -> None:
    for length, size, drop_last, split in itertools.product(
        LENGTHS, BATCH_SIZES, (False, True), (False, True)
    ):
        if split and size % n:
            continue  # accel refuses; see test_iterable_split_refuses_indivisible_batch
        for rank in range(n):
            args = (Stream(length), size, drop_last, n, rank, split)
            ours = IterableDatasetShard(*args)
            theirs = reference.IterableDatasetShard(*args)
            assert list(ours) == list(theirs), (length, size, drop_last, split, rank)
            assert len(ours) == len(theirs)


def test_iterable_split_refuses_indivisible_batch() -> None:
    with pytest.raises(ValueError, match="batch size is 3"):
        IterableDatasetShard(Stream(8), batch_size=3, num_processes=2, split_batches=True)


# ----- prepare_data_loader --------------------------------------------------------------------


def _prepared(module, loader_factory, n, **options):
    shards = []
    for rank in range(n):
        # Both libraries seed a shuffling generator from torch's CPU RNG. Only that one:
        # torch.manual_seed also queues a seed for each lazy device module (cuda, xpu, mtia),
        # formatting a stack trace each time, ~3 ms a call and thousands of calls here.
        torch.default_generator.manual_seed(1234)
        prepared = module.prepare_data_loader(
            loader_factory(), num_processes=n, process_index=rank, **options
        )
        shards.append([batch.tolist() for batch in prepared])
    return shards


@pytest.mark.parametrize("n", PROCESS_COUNTS)
def test_prepare_data_loader_map_style_matches_accelerate(n: int) -> None:
    import accel.core.data as ours

    for length, size, drop_last, even, split, shuffle in itertools.product(
        range(0, 14), (1, 2, 4), (False, True), (True, False), (False, True), (False, True)
    ):
        if (split and size % n) or (shuffle and length == 0):
            continue  # torch's RandomSampler refuses an empty dataset

        def factory(length=length, size=size, drop_last=drop_last, shuffle=shuffle):
            return DataLoader(range(length), batch_size=size, drop_last=drop_last, shuffle=shuffle)

        options = {"split_batches": split, "even_batches": even}
        case = (length, size, drop_last, even, split, shuffle)
        assert _prepared(ours, factory, n, **options) == _prepared(
            reference, factory, n, **options
        ), case


@pytest.mark.parametrize("n", (2, 4))
def test_prepare_data_loader_iterable_matches_accelerate(n: int) -> None:
    import accel.core.data as ours

    for length, size, drop_last, split in itertools.product(
        range(0, 14), (1, 2, 4), (False, True), (False, True)
    ):
        if split and size % n:
            continue

        def factory(length=length, size=size, drop_last=drop_last):
            return DataLoader(Stream(length), batch_size=size, drop_last=drop_last)

        case = (length, size, drop_last, split)
        assert _prepared(ours, factory, n, split_batches=split) == _prepared(
            reference, factory, n, split_batches=split
        ), case


def test_prepare_data_loader_batch_sampler_as_sampler_matches_accelerate() -> None:
    import accel.core.data as ours

    def factory():
        return DataLoader(
            torch.arange(11),
            sampler=BatchSampler(SequentialSampler(range(11)), 3, False),
            batch_size=None,
        )

    assert _prepared(ours, factory, 2) == _prepared(reference, factory, 2)


def test_prepare_split_batches_error_is_clear() -> None:
    loader = DataLoader(range(10), batch_size=3)
    with pytest.raises(ValueError, match=r"batch size 3 is not a multiple of 2"):
        prepare_data_loader(loader, num_processes=2, process_index=0, split_batches=True)


def test_prepare_refuses_loader_without_batches() -> None:
    loader = DataLoader(range(10), batch_size=None)
    with pytest.raises(ValueError, match="batch_size=None and no batch_sampler"):
        prepare_data_loader(loader, num_processes=2, process_index=0)
    # a single process needs no sharding: the loader is kept as it is
    assert len(list(prepare_data_loader(loader, num_processes=1, process_index=0))) == 10


def test_prepare_dispatch_needs_put_on_device() -> None:
    with pytest.raises(ValueError, match="put_on_device"):
        prepare_data_loader(DataLoader(range(4), batch_size=2), dispatch_batches=True)


def test_prepare_dispatch_default_follows_dataset_kind() -> None:
    stream = prepare_data_loader(DataLoader(Stream(4), batch_size=2), put_on_device=True)
    table = prepare_data_loader(DataLoader(range(4), batch_size=2), put_on_device=True)
    unplaced = prepare_data_loader(DataLoader(Stream(4), batch_size=2))
    assert isinstance(stream, DataLoaderDispatcher)
    assert isinstance(table, DataLoaderShard) and isinstance(unplaced, DataLoaderShard)
    assert [b.tolist() for b in stream] == [[0, 1], [2, 3]]


def test_prepare_keeps_loader_settings_and_is_a_dataloader() -> None:
    def collate(samples):
        return torch.tensor(samples) * 10

    loader = DataLoader(range(6), batch_size=2, collate_fn=collate, worker_init_fn=print)
    prepared = prepare_data_loader(loader, num_processes=2, process_index=1)
    assert isinstance(prepared, DataLoader)
    assert prepared.worker_init_fn is print and prepared.collate_fn is collate
    assert [b.tolist() for b in prepared] == [[20, 30], [0, 10]]


def test_prepare_does_not_change_caller_rng_types_list() -> None:
    rng_types = ["generator"]
    prepare_data_loader(DataLoader(range(4), batch_size=2), rng_types=rng_types)
    assert rng_types == ["generator"]


def test_prepare_rejects_unknown_rng_type() -> None:
    with pytest.raises(ValueError, match="'dice'"):
        prepare_data_loader(DataLoader(range(4), batch_size=2), rng_types=["dice"])


def test_total_batch_size_and_dataset_length() -> None:
    loader = DataLoader(range(10), batch_size=2)
    assert prepare_data_loader(loader, num_processes=3, process_index=0).total_batch_size == 6
    split = prepare_data_loader(loader, num_processes=2, process_index=0, split_batches=True)
    assert split.total_batch_size == 2 and split.total_dataset_length == 10
    assert len(prepare_data_loader(loader, num_processes=3, process_index=2)) == 2


# ----- SeedableRandomSampler ------------------------------------------------------------------


def _epoch_orders(data_seed: int, ranks: int = 2, epochs: int = 3) -> list[list[list[int]]]:
    """For each rank, the indices it sees in each epoch (all ranks built from the same seed)."""
    per_rank = []
    for rank in range(ranks):
        torch.manual_seed(rank)  # different global RNG per rank: the data seed must win
        loader = prepare_data_loader(
            DataLoader(range(12), batch_size=2, shuffle=True),
            num_processes=ranks,
            process_index=rank,
            use_seedable_sampler=True,
            data_seed=data_seed,
        )
        per_rank.append([[i for b in loader for i in b.tolist()] for _ in range(epochs)])
    return per_rank


def test_seedable_sampler_agrees_across_ranks_and_changes_per_epoch() -> None:
    first = _epoch_orders(data_seed=5)
    rank0, rank1 = first
    for epoch in range(3):
        assert sorted(rank0[epoch] + rank1[epoch]) == list(range(12))
    assert rank0[0] != rank0[1] != rank0[2]
    assert _epoch_orders(data_seed=5) == first  # reproducible
    assert _epoch_orders(data_seed=6) != first


def test_seedable_sampler_matches_accelerate() -> None:
    for epoch in range(3):
        ours = SeedableRandomSampler(range(10), data_seed=11)
        theirs = reference.SeedableRandomSampler(range(10), data_seed=11)
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)
    assert ours.epoch == 3  # a complete pass moves to the next epoch


def test_set_epoch_reaches_seedable_sampler_of_prepared_loader() -> None:
    loader = prepare_data_loader(
        DataLoader(range(8), batch_size=2, shuffle=True),
        num_processes=2,
        process_index=0,
        use_seedable_sampler=True,
        data_seed=0,
    )
    assert isinstance(get_sampler(loader), SeedableRandomSampler)
    loader.set_epoch(7)
    assert get_sampler(loader).epoch == 7 and loader.iteration == 7 and loader._epoch == 7


# ----- skip_first_batches ---------------------------------------------------------------------


def test_skip_batch_sampler_matches_accelerate() -> None:
    for length, skip in itertools.product(range(10), range(6)):
        batches = BatchSampler(SequentialSampler(range(length)), 2, False)
        ours, theirs = SkipBatchSampler(batches, skip), reference.SkipBatchSampler(batches, skip)
        if skip <= len(batches):
            assert list(ours) == list(theirs) and len(ours) == len(theirs)
        else:  # Accelerate's length goes negative there (list() then raises); accel says 0
            assert list(ours) == [] and len(ours) == 0


@pytest.mark.parametrize("iterable", [False, True])
def test_skip_first_batches_of_prepared_loader_matches_accelerate(iterable: bool) -> None:
    import accel.core.data as ours

    def factory():
        data = Stream(17) if iterable else range(17)
        return DataLoader(data, batch_size=2)

    for skip in range(6):
        results = []
        for module in (ours, reference):
            prepared = module.prepare_data_loader(factory(), num_processes=2, process_index=1)
            results.append([b.tolist() for b in module.skip_first_batches(prepared, skip)])
        assert results[0] == results[1], skip


def test_skip_first_batches_of_plain_loaders() -> None:
    assert [b.tolist() for b in skip_first_batches(DataLoader(range(7), batch_size=2), 2)] == [
        [4, 5],
        [6],
    ]
    skipped = skip_first_batches(DataLoader(Stream(7), batch_size=2), 2)
    assert isinstance(skipped, SkipDataLoader)
    assert [b.tolist() for b in skipped] == [[4, 5], [6]]
    with pytest.raises(ValueError, match="num_batches"):
        skip_first_batches(DataLoader(range(7)), -1)


def test_skip_first_batches_resumes_the_same_shuffled_epoch() -> None:
    loader = prepare_data_loader(
        DataLoader(range(12), batch_size=2, shuffle=True),
        num_processes=2,
        process_index=0,
        use_seedable_sampler=True,
        data_seed=3,
    )
    list(loader)  # epoch 0
    loader.set_epoch(1)
    full = [b.tolist() for b in loader]
    loader.set_epoch(1)
    assert [b.tolist() for b in skip_first_batches(loader, 1)] == full[1:]


# ----- GradientState bookkeeping --------------------------------------------------------------


def _watch(loader):
    """(batch, end_of_dataloader, remainder, batches_yielded) seen from GradientState."""
    state = GradientState()
    seen = []
    for batch in loader:
        assert state.active_dataloader is loader
        seen.append(
            (batch.tolist(), state.end_of_dataloader, state.remainder, loader._batches_yielded)
        )
    assert state.active_dataloader is None
    return seen


def test_end_of_dataloader_is_true_on_last_batch_only() -> None:
    loader = prepare_data_loader(
        DataLoader(range(10), batch_size=2), num_processes=2, process_index=0
    )
    seen = _watch(loader)
    assert [batch for batch, *_ in seen] == [[0, 1], [4, 5], [8, 9]]
    assert [end for _, end, _, _ in seen] == [False, False, True]
    # 10 samples, 4 per global step: the last step holds 2 genuine samples
    assert {remainder for _, _, remainder, _ in seen} == {2}
    assert [count for *_, count in seen] == [1, 2, 3]
    assert loader._epoch == 1


def test_remainder_matches_accelerate_and_unknown_with_drop_last() -> None:
    for length, size, n in itertools.product(range(1, 15), (1, 2, 3), (2, 3)):
        ours = prepare_data_loader(
            DataLoader(range(length), batch_size=size), num_processes=n, process_index=0
        )
        theirs = reference.prepare_data_loader(
            DataLoader(range(length), batch_size=size), num_processes=n, process_index=0
        )
        ours.begin()
        theirs.begin()
        assert ours.remainder == theirs.remainder == length % (size * n)
        ours.end()
        theirs.end()
    dropping = prepare_data_loader(
        DataLoader(range(9), batch_size=2, drop_last=True), num_processes=2, process_index=0
    )
    assert {remainder for *_, remainder, _ in _watch(dropping)} == {-1}


def test_breaking_out_of_the_loop_releases_gradient_state() -> None:
    loader = prepare_data_loader(
        DataLoader(range(10), batch_size=2), num_processes=1, process_index=0
    )
    for _ in loader:
        break
    del _
    import gc

    gc.collect()
    assert GradientState().active_dataloader is None
    assert loader._batches_yielded == 1 and loader._epoch == 0


def test_nested_loaders_report_the_inner_one() -> None:
    outer = prepare_data_loader(DataLoader(range(4), batch_size=2), num_processes=1)
    inner = prepare_data_loader(DataLoader(range(3), batch_size=2), num_processes=1)
    for _ in outer:
        ends = [GradientState().end_of_dataloader for _ in inner]
        assert ends == [False, True]
        assert GradientState().active_dataloader is outer


def test_dispatcher_single_process_bookkeeping() -> None:
    loader = prepare_data_loader(
        DataLoader(Stream(5), batch_size=2), put_on_device=True, device=torch.device("cpu")
    )
    assert isinstance(loader, DataLoaderDispatcher)
    seen = _watch(loader)
    assert [batch for batch, *_ in seen] == [[0, 1], [2, 3], [4]]
    assert [end for _, end, _, _ in seen] == [False, False, True]
    assert seen[-1][2] == 1  # the last global batch had 1 sample
    assert loader.total_batch_size == 2 and len(loader) == 3


def test_dataloader_shard_moves_batches_to_device() -> None:
    loader = prepare_data_loader(
        DataLoader(range(4), batch_size=2), device=torch.device("meta"), put_on_device=True
    )
    assert all(batch.device.type == "meta" for batch in loader)


def test_stateful_dataloader_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="use_stateful_dataloader=False"):
        prepare_data_loader(DataLoader(range(4), batch_size=2), use_stateful_dataloader=True)
