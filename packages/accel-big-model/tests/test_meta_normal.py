"""Meta-device init skips ``normal_`` (no ``torch._dynamo`` import), builds the same models."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import accel.big_model
from accel.big_model.init import init_empty_weights, init_on_device
from accel.big_model.meta_normal import SkipMetaNormal


class TinyLM(nn.Module):
    """Embeddings, LayerNorms, BatchNorm buffers, a tied head and GPT-2's normal init."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(100, 16), nn.Embedding(8, 16)
        self.block = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 64), nn.Linear(64, 16))
        self.norm = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 100, bias=False)
        self.head.weight = self.tokens.weight
        self.register_buffer("position_ids", torch.arange(8), persistent=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.data.normal_(mean=0.0, std=0.02)
                nn.init.normal_(module.weight, std=0.02)


def described(model: nn.Module) -> list[tuple]:
    """Every parameter and buffer, tied ones under each name, as the facts a caller sees."""
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers()]
    return [
        (name, type(t), t.shape, t.dtype, t.device, t.requires_grad, t._version)
        for name, t in tensors
    ]


MODELS: dict[str, Callable[[], nn.Module]] = {
    "tiny_lm": TinyLM,
    "transformer_layer": lambda: nn.TransformerEncoderLayer(16, 2, dim_feedforward=32),
    "xavier_kaiming": lambda: nn.Sequential(*(nn.Linear(8, 8) for _ in range(2))).apply(
        lambda m: (
            (nn.init.xavier_normal_(m.weight), nn.init.kaiming_normal_(m.weight))
            if isinstance(m, nn.Linear)
            else None
        )
    ),
}


def built(library: ModuleType) -> dict[tuple[str, bool, str], list[tuple]]:
    """Every model of MODELS built under ``library``'s two meta contexts, described."""
    contexts = {
        "init_empty_weights": library.init_empty_weights,
        "init_on_device": partial(library.init_on_device, torch.device("meta")),
    }
    models = {}
    for name, build in MODELS.items():
        for include_buffers in (False, True):
            for context, enter in contexts.items():
                with enter(include_buffers=include_buffers):
                    models[name, include_buffers, context] = described(build())
    return models


# A fresh interpreter: accel builds every model first, without importing torch._dynamo, then
# Accelerate (whose meta normal_ imports it) builds them too, and they must be the same.
FRESH_COMPARISON = """
import sys
sys.path.insert(0, {tests!r})
import accel.big_model
from test_meta_normal import built

ours = built(accel.big_model)
print("torch._dynamo" in sys.modules)
import accelerate

print(ours == built(accelerate))
"""


def test_meta_init_in_a_fresh_interpreter_skips_dynamo_and_matches_accelerate():
    """torch's meta ``normal_`` imports ``torch._dynamo`` (seconds of CPU); accel skips it and
    builds the models Accelerate builds: same names, classes, shapes, dtypes, devices,
    requires_grad and version counters (tied weights under each name)."""
    pytest.importorskip("accelerate")
    code = FRESH_COMPARISON.format(tests=str(Path(__file__).parent))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    imported_dynamo, same_models = result.stdout.split()
    assert imported_dynamo == "False"
    assert same_models == "True"


def test_models_match_accelerate_once_dynamo_is_imported():
    """With ``torch._dynamo`` imported the skip is off (it would cost more than it saves)."""
    accelerate = pytest.importorskip("accelerate")
    importlib.import_module("torch._dynamo")
    with init_empty_weights():
        assert not torch.overrides.has_torch_function((torch.empty(1),))
    assert built(accel.big_model) == built(accelerate)


class Logged(torch.Tensor):
    """A subclass with its own ``__torch_function__``: its calls are never skipped."""

    calls: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


def meta(*shape: int, **kwargs) -> torch.Tensor:
    return torch.empty(*shape, device="meta", **kwargs)


def inference_meta() -> torch.Tensor:
    with torch.inference_mode():
        return meta(3)


CALLS: dict[str, Callable[[], torch.Tensor]] = {
    "plain": lambda: meta(3).normal_(),
    "mean_std_keywords": lambda: meta(3).normal_(mean=1, std=0.5),
    "std_zero": lambda: meta(3).normal_(0.0, 0.0),
    "bfloat16": lambda: meta(3, dtype=torch.bfloat16).normal_(),
    "expanded_view": lambda: meta(1).expand(3).normal_(),
    "negative_std": lambda: meta(3).normal_(0.0, -1.0),
    "nan_std": lambda: meta(3).normal_(0.0, float("nan")),
    "integer_tensor": lambda: meta(3, dtype=torch.int64).normal_(),
    "complex_tensor": lambda: meta(3, dtype=torch.complex64).normal_(),
    "tensor_std": lambda: meta(3).normal_(0.0, torch.tensor(2.0)),
    "generator": lambda: meta(3).normal_(generator=torch.Generator()),
    "bad_argument": lambda: meta(3).normal_(0.0, 1.0, 2.0),  # type: ignore[call-arg]
    "leaf_requiring_grad": lambda: nn.Parameter(meta(3)).normal_(),
    "non_leaf_requiring_grad": lambda: (nn.Parameter(meta(3)) * 2).normal_(),
    "under_no_grad": lambda: _no_grad(lambda: nn.Parameter(meta(3)).normal_()),
    "inference_tensor": lambda: inference_meta().normal_(),
    "in_inference_mode": lambda: _inference(lambda: meta(3).normal_()),
    "init_normal": lambda: nn.init.normal_(nn.Parameter(meta(3)), 0.0, 0.02),
    "init_normal_keywords": lambda: nn.init.normal_(tensor=meta(3), std=0.02),
    "init_negative_std": lambda: nn.init.normal_(meta(3), std=-0.5),
    "init_cpu": lambda: nn.init.normal_(torch.zeros(3), std=0.0),
    "init_xavier_normal": lambda: nn.init.xavier_normal_(meta(4, 4)),
    "subclass": lambda: meta(3).as_subclass(Logged).normal_(),
}


def _no_grad(call: Callable[[], torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return call()


def _inference(call: Callable[[], torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return call()


def outcome(call: Callable[[], torch.Tensor]) -> tuple:
    """The result's visible facts, or the error's type and message."""
    try:
        t = call()
    except (RuntimeError, TypeError, NotImplementedError) as err:
        return type(err), str(err).split("\n")[0]
    version = None if t.is_inference() else t._version
    grad_fn = type(t.grad_fn).__name__ if t.grad_fn is not None else None
    return type(t), t.shape, t.dtype, t.device, t.requires_grad, grad_fn, version


@pytest.mark.parametrize("name", sorted(CALLS))
def test_skipping_changes_no_outcome(name):
    """Every call, skipped or passed through, ends as it does without the mode."""
    Logged.calls.clear()
    expected = outcome(CALLS[name])
    logged = list(Logged.calls)
    with SkipMetaNormal():
        assert outcome(CALLS[name]) == expected
    assert Logged.calls == logged * 2


def test_the_mode_is_gone_after_the_block_even_after_an_error():
    with pytest.raises(RuntimeError, match="boom"), init_empty_weights(include_buffers=True):
        assert torch.overrides.has_torch_function((torch.empty(1),))
        raise RuntimeError("boom")
    assert not torch.overrides.has_torch_function((torch.empty(1),))
    with init_on_device("cpu"):  # a real device: nothing to skip, no mode
        assert not torch.overrides.has_torch_function((torch.empty(1),))
