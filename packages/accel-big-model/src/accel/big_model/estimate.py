"""Memory needed to load (and train) a model, from its structure only, offline.

The numbers are Accelerate's ``accelerate estimate-memory`` numbers: the model is built in
float32 on the meta device; the total and largest layer are divided by 2 (float16/bfloat16), 4
(int8) or 8 (int4); training with Adam is the largest of model, gradients, optimizer states and
step (about 4x the float32 total; 2x for float16/bfloat16 mixed precision; not estimated for
int8/int4). The model comes from a local ``transformers`` config, a local ``timm`` config or
architecture name, or a Python factory; nothing is downloaded.

Example:
    >>> from torch import nn
    >>> rows = estimate_memory(nn.Linear(1024, 1024), ["float32", "int8"])
    >>> [(r.dtype, r.total_size, r.training_size) for r in rows]
    [('float32', 4198400, 16793600), ('int8', 1049600.0, None)]
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from accel.big_model.init import init_empty_weights
from accel.big_model.sizes import calculate_maximum_sizes

#: dtypes a row can be computed for, and what the float32 size is divided by.
DTYPE_DIVISORS = {"float32": 1, "float16": 2, "bfloat16": 2, "int8": 4, "int4": 8}
LIBRARIES = ("transformers", "timm", "torch")


class EstimateError(ValueError):
    """Bad input to the estimate (missing file, not a config, factory not found, ...)."""


@dataclass
class MemoryEstimate:
    """One row of the estimate, in bytes (``training_size`` is None when not estimated)."""

    dtype: str
    largest_layer: float
    total_size: float
    training_size: float | None


def estimate_training_usage(bytes: int, mixed_precision: str) -> dict[str, int]:
    """Accelerate's training estimate for a model of ``bytes`` (float32) bytes, batch size 1.

    Keys ``model``, ``gradients``, ``optimizer``, ``step``; -1 where not estimated (int8/int4).

    Example:
        >>> estimate_training_usage(100, "float32")
        {'model': 100, 'optimizer': 200, 'gradients': 100, 'step': 400}
        >>> max(estimate_training_usage(100, "bfloat16").values())
        200
    """
    sizes = {"model": -1, "optimizer": -1, "gradients": -1, "step": -1}
    fp32, fp16 = bytes, bytes // 2
    if mixed_precision == "float32":
        sizes.update(model=fp32, gradients=fp32, optimizer=2 * fp32, step=4 * fp32)
    elif mixed_precision in ("float16", "bfloat16"):
        sizes.update(model=fp32, gradients=fp32 + fp16, optimizer=2 * fp32, step=2 * fp32)
    return sizes


def estimate_memory(model: nn.Module, dtypes: Sequence[str] | None = None) -> list[MemoryEstimate]:
    """One :class:`MemoryEstimate` per dtype for ``model`` (counted as float32; meta is fine).

    Example:
        >>> row = estimate_memory(nn.Linear(10, 10), ["float16"])[0]
        >>> row.total_size, row.training_size
        (220.0, 880)
    """
    dtypes = list(DTYPE_DIVISORS) if dtypes is None else list(dtypes)
    unknown = [d for d in dtypes if d not in DTYPE_DIVISORS]
    if unknown:
        raise EstimateError(f"unknown dtype(s) {unknown}; valid: {', '.join(DTYPE_DIVISORS)}")
    model = model.to(torch.float32)  # Accelerate builds in float32 and divides from there
    total, (largest, _) = calculate_maximum_sizes(model)
    rows = []
    for dtype in dtypes:
        divisor = DTYPE_DIVISORS[dtype]
        training = max(estimate_training_usage(int(total), dtype).values())
        rows.append(
            MemoryEstimate(
                dtype,
                largest if divisor == 1 else largest / divisor,
                total if divisor == 1 else total / divisor,
                None if training == -1 else training,
            )
        )
    return rows


# --------------------------------------------------------------------------- building models


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_factory_target(target: str) -> bool:
    """Whether ``target`` reads as ``package.module:factory`` or ``path/file.py:factory``.

    Example:
        >>> is_factory_target("mypkg.models:build"), is_factory_target("./config.json")
        (True, False)
    """
    source, sep, attr = target.rpartition(":")
    if not sep or not source or not attr.isidentifier():
        return False
    return source.endswith(".py") or all(p.isidentifier() for p in source.split("."))


def _config_path(target: str) -> str:
    if os.path.isdir(target):
        path = os.path.join(target, "config.json")
        if not os.path.isfile(path):
            raise EstimateError(f"{target!r} is a folder without a config.json")
        return path
    if os.path.isfile(target):
        return target
    raise EstimateError(
        f"{target!r} does not exist; pass a folder holding config.json, a config.json file, "
        f"or a factory 'package.module:function' / 'path/to/file.py:function' "
        f"(nothing is downloaded)"
    )


def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EstimateError(f"{path!r} is not a JSON config file: {err}") from None
    if not isinstance(data, dict):
        raise EstimateError(f"{path!r} is not a config: its JSON is not an object")
    return data


def _transformers_model(target: str, trust_remote_code: bool) -> nn.Module:
    path = _config_path(target)
    data = _read_config(path)
    if "model_type" not in data:
        raise EstimateError(
            f"{path!r} is not a transformers config (it has no 'model_type'); for timm pass "
            f"--library_name timm, for a plain torch model a 'module:factory' target"
        )
    try:
        import transformers
    except ImportError:
        raise ImportError(
            "transformers is not installed; it is needed to build a model from a config "
            "(pip install transformers)"
        ) from None
    with _offline():
        try:
            config = transformers.AutoConfig.from_pretrained(
                os.path.dirname(os.path.abspath(path)) if path.endswith("config.json") else path,
                trust_remote_code=trust_remote_code,
            )
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EstimateError(f"transformers cannot read {path!r}: {first}") from None
        constructor = transformers.AutoModel
        auto_map = getattr(config, "auto_map", None) or {}
        head = next((k for k in auto_map if k.startswith("AutoModelFor")), None)
        if head is not None and hasattr(transformers, head):
            constructor = getattr(transformers, head)
        with init_empty_weights():
            try:
                return constructor.from_config(
                    config, dtype=torch.float32, trust_remote_code=trust_remote_code
                )
            except TypeError:  # transformers < 4.56 spells it torch_dtype
                return constructor.from_config(
                    config, torch_dtype=torch.float32, trust_remote_code=trust_remote_code
                )
            except ValueError as err:
                raise EstimateError(
                    f"transformers cannot build a model from {path!r}: {err}"
                ) from None


def _timm_model(target: str) -> nn.Module:
    try:
        timm = importlib.import_module("timm")  # optional: only for --library_name timm
    except ImportError:
        raise ImportError("timm is not installed; it is needed for --library_name timm") from None
    name = target
    if os.path.exists(target):
        name = _read_config(_config_path(target)).get("architecture")
        if not isinstance(name, str):
            raise EstimateError(f"{target!r} is not a timm config (no 'architecture' key)")
    with _offline(), init_empty_weights():
        try:
            return timm.create_model(name, pretrained=False)
        except (RuntimeError, KeyError, ValueError) as err:
            raise EstimateError(f"timm cannot build {name!r}: {err}") from None


def _load_factory(target: str) -> object:
    source, _, attr = target.rpartition(":")
    if source.endswith(".py"):
        if not os.path.isfile(source):
            raise EstimateError(f"factory file {source!r} does not exist")
        spec = importlib.util.spec_from_file_location("_accel_estimate_target", source)
        if spec is None or spec.loader is None:
            raise EstimateError(f"cannot import {source!r}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(source)))
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise EstimateError(
                f"importing {source!r} failed: {type(err).__name__}: {err}"
            ) from None
        finally:
            sys.path.pop(0)
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(source)
        except ImportError as err:
            raise EstimateError(f"cannot import module {source!r}: {err}") from None
        finally:
            sys.path.pop(0)
    factory = getattr(module, attr, None)
    if factory is None:
        raise EstimateError(f"{source!r} has no attribute {attr!r} (target {target!r})")
    if not callable(factory):
        raise EstimateError(f"{target!r} is not callable")
    return factory


def _factory_model(target: str) -> nn.Module:
    factory = _load_factory(target)
    with init_empty_weights():
        try:
            model = factory()  # type: ignore[operator]
        except Exception as err:
            raise EstimateError(f"{target}() raised {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise EstimateError(f"{target}() returned {type(model).__name__}, not a torch nn.Module")
    return model


def create_empty_model(
    model_name: str, library_name: str | None = None, trust_remote_code: bool = False
) -> nn.Module:
    """Build the model ``model_name`` names on the meta device, without any download.

    ``model_name`` is a folder holding ``config.json`` or a ``config.json`` path (transformers,
    or timm with ``library_name="timm"``, which also takes a timm architecture name), or a
    factory ``package.module:function`` / ``path/to/file.py:function`` returning an
    ``nn.Module``. ``trust_remote_code`` lets transformers run custom code found *in the local
    folder*; the Hub is never contacted (``HF_HUB_OFFLINE=1`` while building).

    Example:
        >>> model = create_empty_model("torch.nn:Identity")
        >>> type(model).__name__
        'Identity'
    """
    if library_name is not None and library_name not in LIBRARIES:
        raise EstimateError(
            f"library_name={library_name!r} is not supported; use one of {', '.join(LIBRARIES)}"
        )
    if is_factory_target(model_name) and not os.path.exists(model_name):
        return _factory_model(model_name)
    if library_name == "torch":
        raise EstimateError(
            f"{model_name!r} is not a factory target; with --library_name torch pass "
            f"'package.module:function' or 'path/to/file.py:function'"
        )
    if library_name == "timm":
        return _timm_model(model_name)
    return _transformers_model(model_name, trust_remote_code)


def format_bytes(size: float) -> str:
    """``size`` in the largest 1024-based unit, rounded like Accelerate's table.

    Accelerate labels these units KB/MB/GB; accel prints KiB/MiB/GiB, which is what they are.

    Example:
        >>> format_bytes(3 * 2**20), format_bytes(512)
        ('3.0 MiB', '512 bytes')
    """
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024.0:
            return f"{round(size, 2)} {unit}"
        size /= 1024.0
    return f"{round(size, 2)} PiB"


def format_table(rows: Sequence[MemoryEstimate], title: str) -> str:
    """The estimate as a box-drawn text table.

    Example:
        >>> print(format_table(estimate_memory(nn.Linear(4, 4), ["float32"]), "demo"))
        ┌────────────────────────────────────────────────────────────┐
        │                            demo                            │
        ├─────────┬───────────────┬────────────┬─────────────────────┤
        │  dtype  │ Largest Layer │ Total Size │ Training using Adam │
        ├─────────┼───────────────┼────────────┼─────────────────────┤
        │ float32 │    64 bytes   │  80 bytes  │      320 bytes      │
        └─────────┴───────────────┴────────────┴─────────────────────┘
    """
    headers = ["dtype", "Largest Layer", "Total Size", "Training using Adam"]
    cells = [
        [
            r.dtype,
            format_bytes(r.largest_layer),
            format_bytes(r.total_size),
            "N/A" if r.training_size is None else format_bytes(r.training_size),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) + 2 for i, h in enumerate(headers)]
    inner = sum(widths) + len(widths) - 1
    extra = len(title) + 2 - inner
    for i in range(max(extra, 0)):  # a long title widens all columns evenly
        widths[i % len(widths)] += 1
    inner = sum(widths) + len(widths) - 1

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * w for w in widths) + right

    def row(values: Sequence[str]) -> str:
        return "│" + "│".join(v.center(w) for v, w in zip(values, widths)) + "│"

    out = [line("┌", "─", "┐"), "│" + title.center(inner) + "│", line("├", "┬", "┤")]
    out += [row(headers), line("├", "┼", "┤"), *(row(c) for c in cells), line("└", "┴", "┘")]
    return "\n".join(out)
