"""Damaged checkpoints (issue #13 part 6): one clear error naming the file, and all or nothing.

Each case damages one real file of a real ``save_state`` folder and checks that
``load_state`` raises :class:`CorruptCheckpointError` naming it and what is wrong, and that
the model, optimizer, scheduler, step, RNG and custom object are exactly as before the call.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import accel.state
from accel.core import Accelerator, CorruptCheckpointError
from accel.core.checkpoint import UnsafeCheckpointError


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.count = state["count"]


def _setup():
    accel.state.reset_state()
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    counter = Counter()
    accelerator.register_for_checkpointing(counter)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return accelerator, model, optimizer, scheduler, counter


def _snapshot(accelerator, model, optimizer, scheduler, counter):
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": repr(optimizer.state_dict()),
        "scheduler": repr(scheduler.state_dict()),
        "step": accelerator.step,
        "torch_rng": torch.get_rng_state().clone(),
        "random": random.getstate(),
        "counter": counter.count,
    }


def _same(a, b) -> bool:
    weights = a["weights"].keys() == b["weights"].keys() and all(
        torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]
    )
    rest = [k for k in a if k not in ("weights", "torch_rng")]
    return (
        weights and torch.equal(a["torch_rng"], b["torch_rng"]) and all(a[k] == b[k] for k in rest)
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    """A checkpoint of a model trained two steps (so every file differs from a fresh job)."""
    accelerator, model, optimizer, scheduler, counter = _setup()
    for _ in range(2):
        accelerator.backward(model(torch.randn(3, 4)).sum())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        counter.count += 1
    accelerator.step = 7
    return accelerator.save_state(tmp_path_factory.mktemp("ckpt") / "good")


def _damage(path: str, kind: str) -> None:
    with open(path, "rb") as handle:
        data = handle.read()
    damaged = {
        "garbage": bytes(range(7, 207)),
        "empty": b"",
        "truncated": data[: len(data) // 2],
    }[kind]
    with open(path, "wb") as handle:
        handle.write(damaged)


WHAT = {"garbage": "not a torch.save file", "empty": "empty", "truncated": "incomplete zip"}


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated"])
@pytest.mark.parametrize(
    "name", ["random_states_0.pkl", "optimizer.bin", "scheduler.bin", "custom_checkpoint_0.pkl"]
)
def test_damaged_file_is_named_and_nothing_changes(saved, tmp_path, name, kind) -> None:
    folder = shutil.copytree(saved, tmp_path / "bad")
    _damage(os.path.join(folder, name), kind)
    job = _setup()
    before = _snapshot(*job)
    with pytest.raises(CorruptCheckpointError) as caught:
        job[0].load_state(folder)
    message = str(caught.value)
    assert name in message and WHAT[kind] in message
    assert not isinstance(caught.value, UnsafeCheckpointError)
    assert _same(before, _snapshot(*job))
    # The intact checkpoint still loads into the same job.
    job[0].load_state(saved)
    assert job[0].step == 7 and job[4].count == 2


def test_damaged_model_file_names_the_tensor_and_nothing_changes(saved, tmp_path) -> None:
    folder = shutil.copytree(saved, tmp_path / "bad")
    path = os.path.join(folder, "model.safetensors")
    os.truncate(path, os.path.getsize(path) - 8)
    job = _setup()
    before = _snapshot(*job)
    with pytest.raises(
        CorruptCheckpointError,
        match=r"model\.safetensors.*truncated: tensor '1\.weight' .*needs bytes",
    ):
        job[0].load_state(folder)
    assert _same(before, _snapshot(*job))


def test_wrong_content_is_refused_before_anything_changes(saved, tmp_path) -> None:
    """Readable files with the wrong content: RNG states of the wrong shape, an optimizer of
    another model, a model with other keys (strict)."""
    cases = {
        "random_states_0.pkl": (
            {
                "random_state": (3, (1, 2), None),
                "numpy_random_seed": 0,
                "torch_manual_seed": torch.zeros(3, dtype=torch.uint8),
            },
            r"random_states_0\.pkl.*'random_state' is not a valid RNG state",
        ),
        "optimizer.bin": (
            {"state": {}, "param_groups": [{"params": [0, 1]}]},
            r"optimizer\.bin.*groups of sizes \[2\].*has \[4\]",
        ),
        "scheduler.bin": ([1, 2], r"scheduler\.bin.*holds a list"),
    }
    for name, (payload, pattern) in cases.items():
        folder = shutil.copytree(saved, tmp_path / name)
        torch.save(payload, os.path.join(folder, name))
        job = _setup()
        before = _snapshot(*job)
        with pytest.raises((CorruptCheckpointError, ValueError), match=pattern):
            job[0].load_state(folder)
        assert _same(before, _snapshot(*job)), name
    from safetensors.torch import save_file

    folder = shutil.copytree(saved, tmp_path / "keys")
    save_file({"0.weight": torch.zeros(8, 4)}, os.path.join(folder, "model.safetensors"))
    job = _setup()
    before = _snapshot(*job)
    with pytest.raises(RuntimeError, match=r"missing keys \['0\.bias', '1\.weight', '1\.bias'\]"):
        job[0].load_state(folder)
    assert _same(before, _snapshot(*job))


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unsafe_only_when_the_pickle_asks_for_code(saved, tmp_path) -> None:
    folder = shutil.copytree(saved, tmp_path / "evil")
    with open(os.path.join(folder, "scheduler.bin"), "wb") as handle:
        pickle.dump({"x": _Payload()}, handle)
    job = _setup()
    before = _snapshot(*job)
    with pytest.raises(UnsafeCheckpointError, match=r"scheduler\.bin.*asks for posix\.getcwd"):
        job[0].load_state(folder)
    assert _same(before, _snapshot(*job))


def test_a_file_path_says_a_folder_is_expected(saved) -> None:
    job = _setup()
    path = os.path.join(saved, "model.safetensors")
    with pytest.raises(
        ValueError, match=r"model\.safetensors' is a file; load_state expects a checkpoint folder"
    ):
        job[0].load_state(path)


_KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import safetensors.torch
    import torch
    from accel.core import Accelerator

    target = sys.argv[1]
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(64, 64))
    accelerator.save_model(model, target, max_shard_size="8KB")  # a complete save first
    real = safetensors.torch.save_file
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second shard of the next save: killed mid-save
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    safetensors.torch.save_file = dying
    accelerator.save_model(model, target, max_shard_size="8KB")
    """
)


def test_save_model_after_a_sigkill_removes_the_leftover(tmp_path) -> None:
    target = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(target)], env=env, timeout=120, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    leftovers = [p.name for p in target.iterdir() if p.name.startswith(".accel-save-")]
    assert len(leftovers) == 1
    accel.state.reset_state()
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(64, 64))
    accelerator.save_model(model, target, max_shard_size="8KB")
    assert not [p.name for p in target.iterdir() if p.name.startswith(".")]
    assert (target / "model.safetensors.index.json").is_file()


def test_bin_weights_are_read_but_not_applied_before_a_bad_optimizer(tmp_path) -> None:
    """``safe_serialization=False``: the ``.bin`` weights are read in the checking step; a bad
    ``optimizer.bin`` still leaves the model untouched."""
    job = _setup()
    accelerator, model, optimizer = job[:3]
    accelerator.backward(model(torch.randn(3, 4)).sum())
    optimizer.step()
    folder = accelerator.save_state(tmp_path / "bin", safe_serialization=False)
    assert os.path.isfile(os.path.join(folder, "pytorch_model.bin"))
    _damage(os.path.join(folder, "optimizer.bin"), "truncated")
    job = _setup()
    before = _snapshot(*job)
    with pytest.raises(CorruptCheckpointError, match=r"optimizer\.bin.*incomplete zip"):
        job[0].load_state(folder)
    assert _same(before, _snapshot(*job))
