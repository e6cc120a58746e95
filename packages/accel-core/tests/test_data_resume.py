"""``accel.core.data.resume``: what a pass's order is drawn from, captured and put back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from accel.core.data.resume import (
    capture_pass_rng,
    is_hf_dataset,
    order_generators,
    restore_pass_rng,
)


class _Stream(IterableDataset):
    def __init__(self) -> None:
        self.rng = np.random.default_rng(5)

    def __iter__(self):
        return iter(self.rng.permutation(6).tolist())

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


def test_global_rng_shuffle_is_drawn_again() -> None:
    loader = DataLoader(range(10), batch_size=3, shuffle=True)
    snapshot = capture_pass_rng(loader)
    first = [b.tolist() for b in loader]
    torch.rand(5)  # anything the training loop draws in between
    restore_pass_rng(loader, snapshot)
    assert [b.tolist() for b in loader] == first


def test_generators_of_loader_sampler_and_dataset_are_found_once() -> None:
    shared = torch.Generator().manual_seed(3)
    loader = DataLoader(range(10), batch_size=2, shuffle=True, generator=shared)
    assert order_generators(loader) == [shared]
    snapshot = capture_pass_rng(loader)
    first = [b.tolist() for b in loader]
    restore_pass_rng(loader, snapshot)
    assert [b.tolist() for b in loader] == first


def test_stateful_dataset_state_is_put_back() -> None:
    loader = DataLoader(_Stream(), batch_size=2)
    snapshot = capture_pass_rng(loader)
    first = [b.tolist() for b in loader]
    assert [b.tolist() for b in loader] != first  # its RNG moved on
    restore_pass_rng(loader, snapshot)
    assert [b.tolist() for b in loader] == first


def test_a_loader_built_differently_is_refused_with_the_counts() -> None:
    snapshot = capture_pass_rng(DataLoader(range(4), shuffle=True))
    other = DataLoader(range(4), shuffle=True, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"recorded 0 generator.*this dataloader has 1"):
        restore_pass_rng(other, snapshot)


def test_global_rngs_can_be_left_alone() -> None:
    generator = torch.Generator().manual_seed(1)
    loader = DataLoader(range(4), shuffle=True, generator=generator)
    snapshot = capture_pass_rng(loader)
    generator.manual_seed(99)
    torch.manual_seed(7)
    expected = torch.get_rng_state()
    restore_pass_rng(loader, snapshot, global_rngs=False)
    assert torch.equal(torch.get_rng_state(), expected)
    assert torch.equal(generator.get_state(), snapshot["generators"][0])


def test_torch_datasets_are_not_taken_for_hf_ones() -> None:
    assert not is_hf_dataset(_Stream())
