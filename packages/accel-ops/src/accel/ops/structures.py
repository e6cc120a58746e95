"""Helpers that walk nested lists, tuples, namedtuples and mappings of tensors.

Every helper here keeps the shape of the structure it is given: a namedtuple comes back as the
same namedtuple, an ``OrderedDict`` as an ``OrderedDict``, a ``BatchEncoding`` as a
``BatchEncoding``; only the leaves change. They run on every training step, so plain tensors
and the built-in containers take short paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "TensorInformation",
    "concatenate",
    "find_batch_size",
    "find_device",
    "get_data_structure",
    "get_shape",
    "honor_type",
    "ignorant_find_batch_size",
    "initialize_tensors",
    "is_namedtuple",
    "is_tensor_information",
    "is_torch_tensor",
    "listify",
    "recursively_apply",
    "send_to_device",
    "slice_tensors",
]


@dataclass
class TensorInformation:
    """The shape and dtype of a tensor: enough to allocate a buffer that can receive it.

    Example:
        >>> info = TensorInformation(shape=torch.Size([2, 3]), dtype=torch.float16)
        >>> info.shape, info.dtype
        (torch.Size([2, 3]), torch.float16)
    """

    shape: torch.Size
    dtype: torch.dtype


def is_torch_tensor(tensor: Any) -> bool:
    """Tell whether ``tensor`` is a ``torch.Tensor`` (subclasses such as ``Parameter`` included).

    Example:
        >>> is_torch_tensor(torch.ones(1)), is_torch_tensor([1.0])
        (True, False)
    """
    return isinstance(tensor, torch.Tensor)


def is_tensor_information(tensor_info: Any) -> bool:
    """Tell whether ``tensor_info`` is a :class:`TensorInformation`.

    Example:
        >>> is_tensor_information(TensorInformation(torch.Size([1]), torch.int64))
        True
        >>> is_tensor_information(torch.ones(1))
        False
    """
    return isinstance(tensor_info, TensorInformation)


def is_namedtuple(data: Any) -> bool:
    """Tell whether ``data`` is a namedtuple instance.

    The test is structural (a tuple with ``_fields`` and ``_asdict``), so a tuple subclass that
    imitates a namedtuple that closely is taken for one.

    Example:
        >>> from collections import namedtuple
        >>> Point = namedtuple("Point", "x y")
        >>> is_namedtuple(Point(1, 2)), is_namedtuple((1, 2))
        (True, False)
    """
    return isinstance(data, tuple) and hasattr(data, "_asdict") and hasattr(data, "_fields")


def honor_type(obj: Any, generator: Iterable[Any]) -> Any:
    """Build a container of the same type as ``obj`` (list, tuple, namedtuple) from ``generator``.

    A namedtuple takes its fields as positional arguments; other sequence types take the
    iterable itself.

    Example:
        >>> from collections import namedtuple
        >>> Point = namedtuple("Point", "x y")
        >>> honor_type(Point(1, 2), (v * 10 for v in (1, 2)))
        Point(x=10, y=20)
        >>> honor_type((1, 2), iter([3, 4]))
        (3, 4)
    """
    if is_namedtuple(obj):
        return type(obj)(*generator)
    return type(obj)(generator)


def _rebuild_mapping(template: Mapping, items: dict) -> Mapping:
    """Return ``items`` in a mapping of the same type as ``template``."""
    cls: type[Any] = type(template)
    if cls is dict:
        return items
    if isinstance(template, defaultdict):
        return cls(template.default_factory, items)
    try:
        return cls(items)
    except TypeError:
        # The type cannot be built from a single dict (its constructor wants something else):
        # a plain dict keeps the data, as Accelerate's users expect.
        return items


def _describe(obj: Any) -> str:
    """Name the type of ``obj`` and show a short repr of it, for error messages."""
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__qualname__} ({text})"


def _walk(
    obj: Any,
    func: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    test_type: Callable[[Any], bool],
    tensor_leaves: bool,
    error_on_other_type: bool,
) -> Any:
    if tensor_leaves and isinstance(obj, torch.Tensor):
        return func(obj, *args, **kwargs)
    walk_args = (func, args, kwargs, test_type, tensor_leaves, error_on_other_type)
    cls = type(obj)
    if cls is list:
        return [_walk(o, *walk_args) for o in obj]
    if cls is tuple:
        return tuple([_walk(o, *walk_args) for o in obj])
    if cls is dict:
        return {k: _walk(v, *walk_args) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return honor_type(obj, [_walk(o, *walk_args) for o in obj])
    if isinstance(obj, Mapping):
        return _rebuild_mapping(obj, {k: _walk(v, *walk_args) for k, v in obj.items()})
    if test_type(obj):
        return func(obj, *args, **kwargs)
    if error_on_other_type:
        func_name = getattr(func, "__name__", repr(func))
        test_name = getattr(test_type, "__name__", repr(test_type))
        raise TypeError(
            f"Unsupported type {_describe(obj)} passed to `{func_name}`: only objects for which "
            f"`{test_name}` is true, nested in lists, tuples, namedtuples or mappings, are supported."
        )
    return obj


def recursively_apply(
    func: Callable[..., Any],
    data: Any,
    *args: Any,
    test_type: Callable[[Any], bool] = is_torch_tensor,
    error_on_other_type: bool = False,
    **kwargs: Any,
) -> Any:
    """Apply ``func`` to every leaf of ``data`` that passes ``test_type``, keeping the structure.

    Lists, tuples, namedtuples and mappings are walked and rebuilt with their own type (a
    mapping whose type cannot be built from a dict comes back as a dict). ``func`` is called as
    ``func(leaf, *args, **kwargs)``. Other leaves are returned unchanged, or raise ``TypeError``
    when ``error_on_other_type`` is true.

    Example:
        >>> from collections import OrderedDict
        >>> batch = OrderedDict(x=torch.ones(2), pair=(torch.zeros(1), "label"))
        >>> out = recursively_apply(torch.mul, batch, 3)
        >>> type(out).__name__, out["x"].tolist(), out["pair"][1]
        ('OrderedDict', [3.0, 3.0], 'label')
    """
    tensor_leaves = test_type is is_torch_tensor
    if tensor_leaves and isinstance(data, torch.Tensor):
        return func(data, *args, **kwargs)
    return _walk(data, func, args, kwargs, test_type, tensor_leaves, error_on_other_type)


def _npu_available() -> bool:
    from accel.state.availability import is_npu_available

    return is_npu_available()


def _move(obj: Any, device: Any, non_blocking: bool) -> Any:
    try:
        return obj.to(device, non_blocking=non_blocking)
    except TypeError:
        # Not every object with a `.to` method accepts `non_blocking`.
        return obj.to(device)
    except AssertionError:
        # torch_npu asserts on a bare device index; it wants "npu:<index>".
        if isinstance(device, int) and _npu_available():
            return _move(obj, f"npu:{device}", non_blocking)
        raise


def _send(obj: Any, device: Any, non_blocking: bool, skip_keys: Any) -> Any:
    if isinstance(obj, torch.Tensor) or hasattr(obj, "to"):
        return _move(obj, device, non_blocking)
    cls = type(obj)
    if cls is dict:
        return {
            k: v if k in skip_keys else _send(v, device, non_blocking, skip_keys)
            for k, v in obj.items()
        }
    if cls is list:
        return [_send(o, device, non_blocking, skip_keys) for o in obj]
    if isinstance(obj, (list, tuple)):
        return honor_type(obj, [_send(o, device, non_blocking, skip_keys) for o in obj])
    if isinstance(obj, Mapping):
        items = {
            k: v if k in skip_keys else _send(v, device, non_blocking, skip_keys)
            for k, v in obj.items()
        }
        return _rebuild_mapping(obj, items)
    return obj


def send_to_device(
    tensor: Any,
    device: torch.device | str | int,
    non_blocking: bool = False,
    skip_keys: str | Iterable[str] | None = None,
) -> Any:
    """Move every tensor (and every object with a ``.to`` method) in ``tensor`` to ``device``.

    The structure is walked like :func:`recursively_apply`. In a mapping, the values under the
    keys named by ``skip_keys`` (one key or several) stay where they are, at any depth. An
    object with a ``.to`` method (a ``BatchEncoding``, a module) is moved as a whole, so
    ``skip_keys`` does not reach inside it. ``non_blocking`` is passed on to ``.to`` when it
    accepts it. Other leaves are returned unchanged.

    Example:
        >>> batch = {"input_ids": torch.ones(2, dtype=torch.long), "meta": torch.zeros(1)}
        >>> out = send_to_device(batch, "cpu", skip_keys="meta")
        >>> out["meta"] is batch["meta"], out["input_ids"].device
        (True, device(type='cpu'))
    """
    if device == "npu":
        # torch_npu cannot find its context on the first bare "npu"; an index makes it work.
        device = "npu:0"
    if isinstance(tensor, torch.Tensor):
        return _move(tensor, device, non_blocking)
    if skip_keys is None:
        skip_keys = ()
    elif isinstance(skip_keys, str):
        skip_keys = (skip_keys,)
    return _send(tensor, device, non_blocking, skip_keys)


def _tensor_information(tensor: torch.Tensor) -> TensorInformation:
    return TensorInformation(shape=tensor.shape, dtype=tensor.dtype)


def _shape_as_list(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def _empty_from_information(info: TensorInformation) -> torch.Tensor:
    return torch.empty(tuple(info.shape), dtype=info.dtype)


def get_data_structure(data: Any) -> Any:
    """Replace every tensor in ``data`` by its :class:`TensorInformation` (shape and dtype).

    Example:
        >>> get_data_structure({"x": torch.ones(2, 3)})
        {'x': TensorInformation(shape=torch.Size([2, 3]), dtype=torch.float32)}
    """
    return recursively_apply(_tensor_information, data)


def get_shape(data: Any) -> Any:
    """Replace every tensor in ``data`` by its shape, as a list of ints.

    Example:
        >>> get_shape([torch.ones(2, 3), (torch.zeros(4),)])
        [[2, 3], ([4],)]
    """
    return recursively_apply(_shape_as_list, data)


def initialize_tensors(data_structure: Any) -> Any:
    """Allocate an uninitialized tensor for every :class:`TensorInformation` in the structure.

    The inverse of :func:`get_data_structure`, up to the values: shapes and dtypes match,
    contents are whatever memory held. Tensors are created on the CPU.

    Example:
        >>> out = initialize_tensors({"x": TensorInformation(torch.Size([2]), torch.int64)})
        >>> out["x"].shape, out["x"].dtype
        (torch.Size([2]), torch.int64)
    """
    return recursively_apply(
        _empty_from_information, data_structure, test_type=is_tensor_information
    )


def find_batch_size(data: Any) -> int:
    """Return the size of the first dimension of the first tensor found in ``data``.

    The first element of a list or tuple and the first value of a mapping are followed, depth
    first. Raises ``ValueError`` on an empty container or a 0-dimensional tensor, and
    ``TypeError`` when the first leaf is not a tensor.

    Example:
        >>> find_batch_size({"inputs": [torch.ones(8, 3)], "labels": torch.ones(8)})
        8
    """
    if isinstance(data, torch.Tensor):
        if data.dim() == 0:
            raise ValueError(
                f"Cannot find the batch size of a 0-dimensional tensor {_describe(data)}: "
                "it has no batch dimension."
            )
        return data.shape[0]
    if isinstance(data, (list, tuple, Mapping)):
        if len(data) == 0:
            raise ValueError(
                f"Cannot find the batch size of an empty {type(data).__qualname__}: "
                "it holds no tensor."
            )
        first = next(iter(data.values())) if isinstance(data, Mapping) else data[0]
        return find_batch_size(first)
    raise TypeError(
        f"Cannot find the batch size of {_describe(data)}: expected a tensor, or a list, "
        "tuple or mapping whose first element (at any depth) is a tensor."
    )


def ignorant_find_batch_size(data: Any) -> int | None:
    """Like :func:`find_batch_size`, but return ``None`` where it would raise.

    Example:
        >>> ignorant_find_batch_size([torch.ones(4, 2)]), ignorant_find_batch_size(["text"])
        (4, None)
    """
    try:
        return find_batch_size(data)
    except (ValueError, TypeError):
        return None


def _to_python(tensor: torch.Tensor) -> Any:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        # `tolist` goes through a conversion that has no bfloat16.
        tensor = tensor.float()
    return tensor.tolist()


def listify(data: Any) -> Any:
    """Replace every tensor in ``data`` by Python numbers (nested lists, or a scalar).

    Tensors are detached and copied to the CPU first; bfloat16 values come back as floats.

    Example:
        >>> listify({"loss": torch.tensor(0.5), "ids": torch.tensor([[1, 2]])})
        {'loss': 0.5, 'ids': [[1, 2]]}
    """
    return recursively_apply(_to_python, data)


def _take_slice(tensor: torch.Tensor, tensor_slice: Any) -> torch.Tensor:
    return tensor[tensor_slice]


def slice_tensors(
    data: Any,
    tensor_slice: slice | Any,
    process_index: int | None = None,
    num_processes: int | None = None,
) -> Any:
    """Index every tensor in ``data`` with ``tensor_slice`` (along the first dimension for a slice).

    ``process_index`` and ``num_processes`` are accepted for Accelerate compatibility and
    ignored. The results are views when the index allows it, as with ``tensor[tensor_slice]``.

    Example:
        >>> out = slice_tensors({"x": torch.arange(6), "y": [torch.arange(6) * 2]}, slice(0, 2))
        >>> out["x"].tolist(), out["y"][0].tolist()
        ([0, 1], [0, 2])
    """
    return recursively_apply(_take_slice, data, tensor_slice)


def _check_same_kind(data: list | tuple, kind: type | tuple[type, ...], kind_name: str) -> None:
    for index, item in enumerate(data):
        if not isinstance(item, kind):
            raise TypeError(
                f"Cannot concatenate: element 0 is {kind_name}, but element {index} is "
                f"{_describe(item)}; all elements must have the same structure."
            )


def concatenate(data: list | tuple, dim: int = 0) -> Any:
    """Join a list of structures of tensors into one structure of concatenated tensors.

    Every element of ``data`` must have the structure of the first one; the tensors found at
    the same place are joined with ``torch.cat`` along ``dim``. A list holding a single
    non-tensor leaf returns that leaf.

    Example:
        >>> steps = [{"logits": torch.ones(2, 3)}, {"logits": torch.zeros(1, 3)}]
        >>> concatenate(steps)["logits"].shape
        torch.Size([3, 3])
    """
    if not isinstance(data, (list, tuple)):
        raise TypeError(
            f"concatenate expects a list or tuple of structures to join, got {_describe(data)}."
        )
    if len(data) == 0:
        raise ValueError(
            f"Cannot concatenate an empty {type(data).__qualname__}: there is nothing to join."
        )
    first = data[0]
    if isinstance(first, (list, tuple)):
        _check_same_kind(data, (list, tuple), f"a {type(first).__qualname__}")
        for index, item in enumerate(data):
            if len(item) != len(first):
                raise ValueError(
                    f"Cannot concatenate: element 0 has {len(first)} entries, but element "
                    f"{index} has {len(item)}; all elements must have the same structure."
                )
        return honor_type(
            first, [concatenate([d[i] for d in data], dim=dim) for i in range(len(first))]
        )
    if isinstance(first, Mapping):
        _check_same_kind(data, Mapping, f"a {type(first).__qualname__}")
        for index, item in enumerate(data):
            missing = [k for k in first if k not in item]
            if missing:
                raise ValueError(
                    f"Cannot concatenate: element {index} lacks the keys {missing} that "
                    "element 0 has; all elements must have the same structure."
                )
        return _rebuild_mapping(
            first, {k: concatenate([d[k] for d in data], dim=dim) for k in first}
        )
    if isinstance(first, torch.Tensor):
        _check_same_kind(data, torch.Tensor, "a tensor")
        return torch.cat(data, dim=dim)
    if len(data) == 1:
        return first
    raise TypeError(
        f"Can only concatenate tensors (nested in lists, tuples or mappings), got {_describe(first)}."
    )


def find_device(data: Any) -> torch.device | None:
    """Return the device of the first tensor found in ``data``, or ``None`` if it holds none.

    Assumes all tensors in ``data`` live on one device; only the first is looked at.

    Example:
        >>> find_device({"meta": "no tensor here", "x": [torch.ones(1)]})
        device(type='cpu')
        >>> find_device(["text"]) is None
        True
    """
    if isinstance(data, torch.Tensor):
        return data.device
    if isinstance(data, Mapping):
        data = data.values()
    elif not isinstance(data, (list, tuple)):
        return None
    for item in data:
        device = find_device(item)
        if device is not None:
            return device
    return None
