from __future__ import annotations

import pickle
from collections import OrderedDict, defaultdict, namedtuple
from collections.abc import Iterator, Mapping

import pytest
import torch

from accel.ops.fp32_outputs import ConvertOutputsToFp32, convert_outputs_to_fp32, convert_to_fp32
from accel.ops.structures import (
    TensorInformation,
    concatenate,
    find_batch_size,
    find_device,
    get_data_structure,
    get_shape,
    honor_type,
    ignorant_find_batch_size,
    initialize_tensors,
    is_namedtuple,
    is_tensor_information,
    listify,
    recursively_apply,
    send_to_device,
    slice_tensors,
)

Point = namedtuple("Point", "x y")


class FrozenMapping(Mapping):
    """A read-only Mapping that is not a dict subclass."""

    def __init__(self, data: dict) -> None:
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class TaggedDict(dict):
    """A dict subclass, like transformers' BatchEncoding."""


class NeedsTwoArgs(dict):
    """A mapping whose constructor cannot take a single dict."""

    def __init__(self, data: dict, tag: str) -> None:
        super().__init__(data)
        self.tag = tag


class Movable:
    """A non-tensor object with a `.to` method that rejects `non_blocking`."""

    def __init__(self) -> None:
        self.device = None

    def to(self, device):
        moved = Movable()
        moved.device = device
        return moved


def double(tensor: torch.Tensor) -> torch.Tensor:
    return tensor * 2


def half_forward(x: torch.Tensor) -> dict:
    return {"logits": x.half(), "ids": torch.arange(2)}


# --- type checks and honor_type ---


def test_is_namedtuple_tells_namedtuples_from_tuples():
    assert is_namedtuple(Point(1, 2))
    assert not is_namedtuple((1, 2))
    assert not is_namedtuple([1, 2])


def test_is_tensor_information():
    assert is_tensor_information(TensorInformation(torch.Size([1]), torch.float32))
    assert not is_tensor_information(torch.ones(1))


def test_honor_type_rebuilds_each_sequence_type():
    assert honor_type(Point(0, 0), iter([3, 4])) == Point(3, 4)
    assert type(honor_type(Point(0, 0), iter([3, 4]))) is Point
    assert honor_type((0,), iter([5])) == (5,)
    assert honor_type([0], iter([5])) == [5]


# --- recursively_apply ---


def test_recursively_apply_on_plain_tensor():
    assert torch.equal(recursively_apply(double, torch.tensor([1, 2])), torch.tensor([2, 4]))


@pytest.mark.parametrize(
    "container",
    [
        [torch.ones(1), torch.ones(1)],
        (torch.ones(1), torch.ones(1)),
        Point(torch.ones(1), torch.ones(1)),
    ],
    ids=["list", "tuple", "namedtuple"],
)
def test_recursively_apply_keeps_sequence_types(container):
    out = recursively_apply(double, container)
    assert type(out) is type(container)
    assert [t.item() for t in out] == [2.0, 2.0]


@pytest.mark.parametrize(
    "mapping",
    [
        {"a": torch.ones(1), "b": torch.ones(1)},
        OrderedDict(a=torch.ones(1), b=torch.ones(1)),
        TaggedDict(a=torch.ones(1), b=torch.ones(1)),
        FrozenMapping({"a": torch.ones(1), "b": torch.ones(1)}),
    ],
    ids=["dict", "OrderedDict", "dict-subclass", "Mapping-subclass"],
)
def test_recursively_apply_keeps_mapping_types(mapping):
    out = recursively_apply(double, mapping)
    assert type(out) is type(mapping)
    assert list(out.keys()) == ["a", "b"]
    assert out["a"].item() == 2.0


def test_recursively_apply_keeps_defaultdict_factory():
    data = defaultdict(list, {"a": torch.ones(1)})
    out = recursively_apply(double, data)
    assert type(out) is defaultdict
    assert out.default_factory is list
    assert out["a"].item() == 2.0


def test_recursively_apply_falls_back_to_dict_for_unbuildable_mapping():
    data = NeedsTwoArgs({"a": torch.ones(1)}, tag="t")
    out = recursively_apply(double, data)
    assert type(out) is dict
    assert out["a"].item() == 2.0


def test_recursively_apply_nested_structure_and_other_leaves():
    data = OrderedDict(
        inputs=[torch.ones(2), Point(torch.ones(1), "keep")],
        meta={"name": "batch", "step": 3},
    )
    out = recursively_apply(double, data)
    assert type(out) is OrderedDict
    assert type(out["inputs"][1]) is Point
    assert out["inputs"][0].tolist() == [2.0, 2.0]
    assert out["inputs"][1].x.item() == 2.0
    assert out["inputs"][1].y == "keep"
    assert out["meta"] == {"name": "batch", "step": 3}
    # The input is not modified.
    assert data["inputs"][0].tolist() == [1.0, 1.0]


def test_recursively_apply_passes_args_and_kwargs():
    out = recursively_apply(torch.clamp, [torch.tensor([-5.0, 5.0])], min=-1.0, max=1.0)
    assert out[0].tolist() == [-1.0, 1.0]
    out = recursively_apply(torch.add, {"x": torch.ones(1)}, 4)
    assert out["x"].item() == 5.0


def test_recursively_apply_custom_test_type():
    out = recursively_apply(
        lambda s: s.upper(), ["a", ("b", 1)], test_type=lambda o: isinstance(o, str)
    )
    assert out == ["A", ("B", 1)]


def test_recursively_apply_error_names_bad_type_and_function():
    with pytest.raises(TypeError) as info:
        recursively_apply(double, {"x": torch.ones(1), "y": 3.5}, error_on_other_type=True)
    message = str(info.value)
    assert "float" in message
    assert "3.5" in message
    assert "double" in message
    assert "is_torch_tensor" in message


def test_recursively_apply_without_error_returns_other_leaves_as_is():
    marker = object()
    out = recursively_apply(double, [marker, torch.ones(1)])
    assert out[0] is marker


# --- send_to_device ---


def test_send_to_device_moves_tensors_and_keeps_types():
    data = OrderedDict(x=torch.ones(2), pair=Point(torch.zeros(1), [torch.ones(1)]), text="hi")
    out = send_to_device(data, torch.device("cpu"))
    assert type(out) is OrderedDict
    assert type(out["pair"]) is Point
    assert out["x"].device.type == "cpu"
    assert out["pair"].y[0].device.type == "cpu"
    assert out["text"] == "hi"


def test_send_to_device_changes_dtype_through_to():
    # `.to` accepts a dtype as well: a visible way to check leaves went through `.to`.
    out = send_to_device({"x": torch.ones(2), "y": [torch.ones(1)]}, torch.float64)
    assert out["x"].dtype == torch.float64
    assert out["y"][0].dtype == torch.float64


@pytest.mark.parametrize("skip_keys", ["meta", ["meta"], ("meta", "other")])
def test_send_to_device_skip_keys(skip_keys):
    meta = torch.ones(1)
    data = {"x": torch.ones(1), "meta": meta, "nested": {"meta": meta, "y": torch.ones(1)}}
    out = send_to_device(data, torch.float64, skip_keys=skip_keys)
    assert out["x"].dtype == torch.float64
    assert out["meta"] is meta
    assert out["nested"]["meta"] is meta
    assert out["nested"]["y"].dtype == torch.float64


def test_send_to_device_objects_with_to_without_non_blocking():
    out = send_to_device([Movable()], "cpu", non_blocking=True)
    assert out[0].device == "cpu"


def test_send_to_device_plain_tensor_and_other_leaves():
    assert send_to_device(torch.ones(1, dtype=torch.int32), torch.int64).dtype == torch.int64
    assert send_to_device("text", "cpu") == "text"
    assert send_to_device(None, "cpu") is None


# --- structure, shape, batch size ---


def test_get_data_structure_and_initialize_tensors_roundtrip():
    data = {"a": torch.ones(2, 3, dtype=torch.float16), "b": [torch.zeros((), dtype=torch.long)]}
    info = get_data_structure(data)
    assert info["a"] == TensorInformation(torch.Size([2, 3]), torch.float16)
    assert info["b"][0] == TensorInformation(torch.Size([]), torch.long)
    empty = initialize_tensors(info)
    assert empty["a"].shape == (2, 3)
    assert empty["a"].dtype == torch.float16
    assert empty["b"][0].shape == ()
    assert empty["b"][0].dtype == torch.long


def test_get_shape():
    assert get_shape(Point(torch.ones(2, 3), (torch.ones(4),))) == Point([2, 3], ([4],))


def test_find_batch_size_nested():
    data = {"inputs": [Point(torch.ones(5, 3), torch.ones(2))], "labels": torch.ones(7)}
    assert find_batch_size(data) == 5
    assert find_batch_size(OrderedDict(b=(torch.ones(3, 1),))) == 3


@pytest.mark.parametrize("empty, name", [([], "list"), ((), "tuple"), ({}, "dict")])
def test_find_batch_size_empty_container_error(empty, name):
    with pytest.raises(ValueError, match=f"empty {name}"):
        find_batch_size(empty)


def test_find_batch_size_unsupported_type_error():
    with pytest.raises(TypeError) as info:
        find_batch_size({"text": ["hello"]})
    assert "str" in str(info.value)
    assert "'hello'" in str(info.value)


def test_find_batch_size_scalar_error():
    with pytest.raises(ValueError, match="0-dimensional"):
        find_batch_size(torch.tensor(3.0))


def test_ignorant_find_batch_size():
    assert ignorant_find_batch_size([torch.ones(4, 2)]) == 4
    assert ignorant_find_batch_size([]) is None
    assert ignorant_find_batch_size(["text"]) is None
    assert ignorant_find_batch_size(torch.tensor(1)) is None


def test_listify():
    data = {
        "loss": torch.tensor(0.5),
        "ids": (torch.tensor([[1, 2]]),),
        "bf": torch.ones(2, dtype=torch.bfloat16),
    }
    out = listify(data)
    assert out == {"loss": 0.5, "ids": ([[1, 2]],), "bf": [1.0, 1.0]}


def test_slice_tensors_nested():
    data = {"x": torch.arange(10), "y": Point(torch.arange(10) * 2, "tag")}
    out = slice_tensors(data, slice(2, 4), process_index=0, num_processes=2)
    assert out["x"].tolist() == [2, 3]
    assert out["y"].x.tolist() == [4, 6]
    assert out["y"].y == "tag"
    assert type(out["y"]) is Point


# --- concatenate ---


def test_concatenate_tensors():
    out = concatenate([torch.ones(2, 3), torch.zeros(1, 3)])
    assert out.shape == (3, 3)
    assert out[2].tolist() == [0.0, 0.0, 0.0]
    assert concatenate([torch.ones(2, 1), torch.ones(2, 2)], dim=1).shape == (2, 3)


def test_concatenate_nested_structures():
    steps = [
        OrderedDict(logits=torch.ones(2, 3), extra=Point(torch.ones(2), [torch.ones(2, 1)])),
        OrderedDict(logits=torch.zeros(1, 3), extra=Point(torch.zeros(1), [torch.zeros(1, 1)])),
    ]
    out = concatenate(steps)
    assert type(out) is OrderedDict
    assert type(out["extra"]) is Point
    assert out["logits"].shape == (3, 3)
    assert out["extra"].x.tolist() == [1.0, 1.0, 0.0]
    assert out["extra"].y[0].shape == (3, 1)


def test_concatenate_single_non_tensor_is_returned():
    assert concatenate([{"name": "a", "x": torch.ones(1)}])["name"] == "a"


def test_concatenate_empty_error():
    with pytest.raises(ValueError, match="empty list"):
        concatenate([])


def test_concatenate_mismatched_types_error():
    with pytest.raises(TypeError) as info:
        concatenate([torch.ones(1), [torch.ones(1)]])
    assert "element 1" in str(info.value)
    assert "list" in str(info.value)
    with pytest.raises(TypeError, match="element 1 is tuple"):
        concatenate([{"x": torch.ones(1)}, (torch.ones(1),)])


def test_concatenate_mismatched_structure_errors():
    with pytest.raises(ValueError, match="lacks the keys \\['y'\\]"):
        concatenate([{"x": torch.ones(1), "y": torch.ones(1)}, {"x": torch.ones(1)}])
    with pytest.raises(ValueError, match="element 1 has 1"):
        concatenate([(torch.ones(1), torch.ones(1)), (torch.ones(1),)])


def test_concatenate_non_tensor_leaves_error():
    with pytest.raises(TypeError, match="got int"):
        concatenate([1, 2])


def test_concatenate_rejects_non_list():
    with pytest.raises(TypeError, match="got Tensor"):
        concatenate(torch.ones(2))


# --- find_device ---


def test_find_device():
    assert find_device({"meta": "x", "v": [None, torch.ones(1)]}) == torch.device("cpu")
    assert find_device(["text", {"a": 1}]) is None
    assert find_device(torch.ones(1, device="meta")) == torch.device("meta")


# --- fp32 conversion ---


def test_convert_to_fp32_only_half_precision():
    data = {
        "fp16": torch.ones(2, dtype=torch.float16),
        "bf16": [torch.ones(2, dtype=torch.bfloat16)],
        "fp64": torch.ones(2, dtype=torch.float64),
        "ids": torch.ones(2, dtype=torch.long),
        "text": "t",
    }
    out = convert_to_fp32(data)
    assert out["fp16"].dtype == torch.float32
    assert out["bf16"][0].dtype == torch.float32
    assert out["fp64"] is data["fp64"]
    assert out["ids"] is data["ids"]
    assert out["text"] == "t"


def test_convert_to_fp32_plain_tensor():
    assert convert_to_fp32(torch.ones(1, dtype=torch.float16)).dtype == torch.float32
    fp32 = torch.ones(1)
    assert convert_to_fp32(fp32) is fp32


def test_convert_outputs_to_fp32_wrapper():
    wrapped = ConvertOutputsToFp32(half_forward)
    out = wrapped(torch.ones(2))
    assert out["logits"].dtype == torch.float32
    assert out["ids"].dtype == torch.long
    assert wrapped.__name__ == "half_forward"
    assert wrapped.__wrapped__ is half_forward


def test_convert_outputs_to_fp32_pickles():
    restored = pickle.loads(pickle.dumps(ConvertOutputsToFp32(half_forward)))
    assert isinstance(restored, ConvertOutputsToFp32)
    assert restored.model_forward is half_forward
    assert restored(torch.ones(2))["logits"].dtype == torch.float32


def test_convert_outputs_to_fp32_function():
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    forward = convert_outputs_to_fp32(model.forward)
    assert forward(torch.ones(1, 2, dtype=torch.bfloat16)).dtype == torch.float32
    assert isinstance(forward.__wrapped__, ConvertOutputsToFp32)
    assert forward.__wrapped__.__wrapped__ == model.forward
