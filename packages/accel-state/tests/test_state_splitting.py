"""split_for_process over every small length and process count, for each supported type."""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict

import pytest
import torch

from accel.state import split_for_process
from accel.state.splitting import share_bounds


class FakeDataset:
    """The part of ``datasets.Dataset`` that splitting uses: len() and select()."""

    def __init__(self, rows):
        self.rows = list(rows)
        self.selections = []

    def __len__(self):
        return len(self.rows)

    def select(self, indices):
        indices = list(indices)
        self.selections.append(indices)
        return FakeDataset(self.rows[i] for i in indices)


LENGTHS = range(8)
PROCESSES = range(1, 5)
CASES = list(itertools.product(LENGTHS, PROCESSES))


def _as_list(share):
    if isinstance(share, torch.Tensor):
        return share.tolist()
    if isinstance(share, FakeDataset):
        return share.rows
    return list(share)


def _check_shares(items, shares, num_processes, padded):
    """Shares are contiguous, ordered, near-equal; padding repeats the last item."""
    length = len(items)
    sizes = [len(s) for s in shares]
    if padded:
        per = -(-length // num_processes)
        assert sizes == [per] * num_processes
        real = [share_bounds(length, i, num_processes) for i in range(num_processes)]
        rebuilt = []
        for share, (start, end) in zip(shares, real):
            assert share[: end - start] == items[start:end]
            assert share[end - start :] == [items[-1]] * (per - (end - start))
            rebuilt += share[: end - start]
        assert rebuilt == items
    else:
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)  # earlier processes get the extras
        assert list(itertools.chain.from_iterable(shares)) == items


def _build(kind, length):
    items = list(range(10, 10 + length))
    if kind == "list":
        return items, list(items)
    if kind == "tuple":
        return items, tuple(items)
    if kind == "tensor":
        return items, torch.tensor(items, dtype=torch.long)
    if kind == "dataset":
        return items, FakeDataset(items)
    raise AssertionError(kind)


@pytest.mark.parametrize("apply_padding", [False, True])
@pytest.mark.parametrize("kind", ["list", "tuple", "tensor", "dataset"])
def test_split_table(kind, apply_padding):
    for length, num_processes in CASES:
        if apply_padding and length == 0:
            continue
        items, inputs = _build(kind, length)
        snapshot = copy.deepcopy(inputs)
        shares = [
            split_for_process(inputs, i, num_processes, apply_padding=apply_padding)
            for i in range(num_processes)
        ]
        for share in shares:
            if kind == "tuple":
                assert type(share) is tuple
            elif kind == "list":
                assert type(share) is list
            elif kind == "tensor":
                assert isinstance(share, torch.Tensor) and share.dtype == torch.long
            else:
                assert isinstance(share, FakeDataset)
        _check_shares(items, [_as_list(s) for s in shares], num_processes, apply_padding)
        # the input is not mutated
        if kind == "tensor":
            assert torch.equal(inputs, snapshot)
        elif kind == "dataset":
            assert inputs.rows == snapshot.rows
        else:
            assert inputs == snapshot


@pytest.mark.parametrize("apply_padding", [False, True])
def test_split_dict_table(apply_padding):
    for length, num_processes in CASES:
        if apply_padding and length == 0:
            continue
        items = list(range(length))
        inputs = {
            "ids": list(items),
            "pair": tuple(i * 2 for i in items),
            "x": torch.arange(length * 2).reshape(length, 2),
        }
        snapshot = copy.deepcopy(inputs)
        shares = [
            split_for_process(inputs, i, num_processes, apply_padding=apply_padding)
            for i in range(num_processes)
        ]
        for share in shares:
            assert type(share) is dict
            assert list(share) == ["ids", "pair", "x"]
            assert type(share["ids"]) is list
            assert type(share["pair"]) is tuple
            assert share["x"].shape[1:] == (2,)
            assert len(share["ids"]) == len(share["pair"]) == share["x"].shape[0]
        _check_shares(items, [s["ids"] for s in shares], num_processes, apply_padding)
        _check_shares(
            [i * 2 for i in items], [list(s["pair"]) for s in shares], num_processes, apply_padding
        )
        rows = [[2 * i, 2 * i + 1] for i in items]
        _check_shares(rows, [s["x"].tolist() for s in shares], num_processes, apply_padding)
        assert inputs.keys() == snapshot.keys()
        assert inputs["ids"] == snapshot["ids"] and inputs["pair"] == snapshot["pair"]
        assert torch.equal(inputs["x"], snapshot["x"])


def test_documented_example():
    assert split_for_process(["A", "B", "C"], 0, 2) == ["A", "B"]
    assert split_for_process(["A", "B", "C"], 1, 2) == ["C"]
    assert split_for_process(["A", "B", "C"], 0, 2, apply_padding=True) == ["A", "B"]
    assert split_for_process(["A", "B", "C"], 1, 2, apply_padding=True) == ["C", "C"]


def test_fewer_items_than_processes_with_padding():
    shares = [split_for_process([7], i, 3, apply_padding=True) for i in range(3)]
    assert shares == [[7], [7], [7]]
    shares = [split_for_process([7], i, 3) for i in range(3)]
    assert shares == [[7], [], []]


def test_tensor_padding_keeps_trailing_dimensions_and_is_a_copy():
    x = torch.arange(6.0).reshape(3, 2)
    share = split_for_process(x, 1, 2, apply_padding=True)
    assert share.tolist() == [[4.0, 5.0], [4.0, 5.0]]
    share[1, 0] = -1.0
    assert x[2, 0] == 4.0


def test_ordered_dict_keeps_its_type():
    inputs = OrderedDict(b=[1, 2, 3], a=[4, 5, 6])
    share = split_for_process(inputs, 1, 2)
    assert type(share) is OrderedDict
    assert list(share.items()) == [("b", [3]), ("a", [6])]


def test_dataset_padding_selects_last_index():
    data = FakeDataset("abc")
    share = split_for_process(data, 1, 2, apply_padding=True)
    assert share.rows == ["c", "c"]
    assert data.selections[-1] == [2, 2]


def test_dict_with_unequal_lengths_names_keys_and_lengths():
    with pytest.raises(ValueError) as info:
        split_for_process({"a": [1, 2, 3], "b": [1, 2]}, 0, 2)
    message = str(info.value)
    assert "'a': 3" in message
    assert "'b': 2" in message


def test_empty_dict_errors():
    with pytest.raises(ValueError, match="empty dict"):
        split_for_process({}, 0, 2)


@pytest.mark.parametrize("bad", [{1, 2, 3}, 5, (i for i in range(3)), "abc", None], ids=repr)
def test_unsupported_types(bad):
    with pytest.raises(TypeError) as info:
        split_for_process(bad, 0, 2)
    assert type(bad).__name__ in str(info.value)
    assert "list, tuple, torch.Tensor" in str(info.value)


def test_unsupported_value_inside_dict():
    with pytest.raises(TypeError, match="set"):
        split_for_process({"a": {1, 2}}, 0, 2)


def test_zero_dim_tensor_errors():
    with pytest.raises(ValueError, match="0-dimensional"):
        split_for_process(torch.tensor(3.0), 0, 2)


@pytest.mark.parametrize("empty", [[], (), torch.empty(0), {"a": []}, FakeDataset([])], ids=repr)
def test_apply_padding_on_empty_errors(empty):
    with pytest.raises(ValueError, match="at least one element"):
        split_for_process(empty, 0, 2, apply_padding=True)


def test_empty_without_padding_gives_empty_shares():
    assert [split_for_process([], i, 3) for i in range(3)] == [[], [], []]
    assert split_for_process((), 1, 2) == ()


def test_share_bounds_cover_range():
    for length, n in CASES:
        bounds = [share_bounds(length, i, n) for i in range(n)]
        assert bounds[0][0] == 0 and bounds[-1][1] == length
        for (_, end), (start, _) in itertools.pairwise(bounds):
            assert end == start
