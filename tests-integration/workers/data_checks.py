"""accel.core.data under a real 2-process job (gloo, CPU): sharding, RNG, dispatch.

Run through ``tests-integration/launching.py``; writes ``rank<N>.json`` into ``ACCEL_IT_OUT``.
Cross-rank comparisons use raw torch collectives, independent of the code under test.
"""

from __future__ import annotations

import os
from collections import Counter

import torch
import torch.distributed as dist
from _harness import Checks
from torch.utils.data import DataLoader, IterableDataset

from accel.core.data import DataLoaderDispatcher, DataLoaderShard, prepare_data_loader
from accel.ops import gather
from accel.state import GradientState, PartialState

RANK = int(os.environ["RANK"])
LENGTH, BATCH = 23, 3  # 23 samples, 6 per global step: 4 steps, the last one short by 1
checks = Checks()
state: PartialState | None = None


class Stream(IterableDataset):
    """0 .. length - 1, as a stream (only process 0 reads it when dispatching)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.reads = 0

    def __iter__(self):
        self.reads += 1
        return iter(range(self.length))

    def __len__(self) -> int:
        return self.length


def everyone(value):
    """``value`` from every rank, in rank order."""
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def shuffled_loader(**options) -> DataLoader:
    torch.manual_seed(100 + RANK)  # different global RNG on each rank: sync must fix it
    loader = DataLoader(range(LENGTH), batch_size=BATCH, shuffle=True)
    return prepare_data_loader(
        loader, device=state.device, put_on_device=True, rng_types=["generator"], **options
    )


def one_epoch(loader) -> list[dict]:
    steps = []
    for batch in loader:
        steps.append(
            {
                "batch": batch.tolist(),
                "end": GradientState().end_of_dataloader,
                "remainder": GradientState().remainder,
                "gathered": gather(batch).tolist(),
            }
        )
    return steps


@checks.add
def init_gloo_group():
    global state
    state = PartialState()
    assert state.num_processes == 2 and dist.get_backend() == "gloo"


@checks.add
def shuffle_generator_synchronised_even_batches():
    loader = shuffled_loader()
    assert isinstance(loader, DataLoaderShard), type(loader)
    epochs = [one_epoch(loader) for _ in range(2)]
    orders = []
    for epoch in epochs:
        mine = [step["batch"] for step in epoch]
        ranks = everyone(mine)
        assert len(ranks[0]) == len(ranks[1]) == 4, [len(r) for r in ranks]
        # global order: step s holds rank 0's batch then rank 1's batch
        order = [i for step in zip(*ranks) for batch in step for i in batch]
        counts = Counter(order)
        assert set(counts) == set(range(LENGTH)), order
        assert len(order) == 24 and sum(c - 1 for c in counts.values()) == 1, order
        # the one repeated sample is the first of the epoch's permutation (wrap-around)
        assert order[-1] == order[0], order
        # both ranks saw the same gathered batches, i.e. agree on the permutation
        gathered = [i for step in epoch for i in step["gathered"]]
        assert gathered == order, (gathered, order)
        orders.append(order)
    assert orders[0] != orders[1], "the second epoch repeated the first permutation"
    checks.record("epoch_orders", orders)


@checks.add
def end_of_dataloader_and_remainder_give_exact_metrics():
    loader = shuffled_loader()
    epoch = one_epoch(loader)
    assert [step["end"] for step in epoch] == [False, False, False, True], epoch
    assert {step["remainder"] for step in epoch} == {LENGTH % (2 * BATCH)}, epoch
    # what gather_for_metrics does: drop the padding of the last gathered step
    kept = [i for step in epoch[:-1] for i in step["gathered"]]
    kept += epoch[-1]["gathered"][: epoch[-1]["remainder"]]
    assert sorted(kept) == list(range(LENGTH)), kept
    assert loader._epoch == 1 and loader._batches_yielded == 4
    assert GradientState().active_dataloader is None


@checks.add
def seedable_sampler_shards_one_permutation():
    loader = shuffled_loader(use_seedable_sampler=True, data_seed=7)
    firsts = []
    for _ in range(2):
        mine = [i for batch in loader for i in batch.tolist()]
        ranks = everyone(mine)
        assert set(ranks[0]) | set(ranks[1]) == set(range(LENGTH)), ranks
        firsts.append(ranks)
    assert firsts[0] != firsts[1]


@checks.add
def uneven_batches_see_every_sample_once():
    loader = shuffled_loader(even_batches=False)
    mine = [batch.tolist() for batch in loader]
    ranks = everyone(mine)
    assert [len(r) for r in ranks] == [4, 4], ranks
    assert [len(b) for b in ranks[1]] == [3, 3, 3, 2], ranks
    flat = [i for r in ranks for b in r for i in b]
    assert sorted(flat) == list(range(LENGTH)), flat


@checks.add
def dispatch_iterable_dataset_from_process_0():
    stream = Stream(11)
    loader = prepare_data_loader(
        DataLoader(stream, batch_size=2), device=state.device, put_on_device=True
    )
    assert isinstance(loader, DataLoaderDispatcher), type(loader)
    assert len(loader) == 3
    epoch = one_epoch(loader)
    assert stream.reads == (1 if RANK == 0 else 0), stream.reads
    ranks = everyone([step["batch"] for step in epoch])
    # 11 samples, 4 per global step: [0..3], [4..7], [8, 9, 10] + 1 sample from the start
    assert ranks[0] == [[0, 1], [4, 5], [8, 9]], ranks
    assert ranks[1] == [[2, 3], [6, 7], [10, 0]], ranks
    assert [step["end"] for step in epoch] == [False, False, True]
    assert epoch[-1]["remainder"] == 3, epoch[-1]
    gathered = [i for step in epoch for i in step["gathered"]]
    assert gathered == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0], gathered


@checks.add
def dispatch_split_batches():
    loader = prepare_data_loader(
        DataLoader(Stream(10), batch_size=4),
        device=state.device,
        put_on_device=True,
        split_batches=True,
    )
    mine = [batch.tolist() for batch in loader]
    ranks = everyone(mine)
    assert ranks[0] == [[0, 1], [4, 5], [8]], ranks
    assert ranks[1] == [[2, 3], [6, 7], [9]], ranks


checks.run(RANK)
if dist.is_initialized():
    dist.destroy_process_group()
