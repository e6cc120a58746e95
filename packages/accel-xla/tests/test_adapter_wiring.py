"""The entry points name what the registries expect; bad setups fail with one line."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from accel.core.strategies.base import TrainingStrategy
from accel.state.backends import CollectiveBackend

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
ROOT = Path(__file__).resolve().parents[3]
HAS_TORCH_XLA = importlib.util.find_spec("torch_xla") is not None


def _entry_point(group: str) -> object:
    value = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][group]["xla"]
    module, _, attribute = value.partition(":")
    return getattr(importlib.import_module(module), attribute)


def test_backend_entry_point_is_a_backend_instance() -> None:
    backend = _entry_point("accel.backends")
    assert isinstance(backend, CollectiveBackend)
    assert (backend.name, backend.device_type, backend.distributed_type) == ("xla", "xla", "XLA")
    assert backend.supports_object_collectives is False
    assert backend.is_available() is HAS_TORCH_XLA


def test_strategy_entry_point_is_a_strategy_class() -> None:
    strategy = _entry_point("accel.strategies")
    assert isinstance(strategy, type) and issubclass(strategy, TrainingStrategy)
    assert strategy.name == "xla"


def test_importing_the_adapter_does_not_import_torch_xla() -> None:
    code = (
        "import sys, accel.xla.backend, accel.xla.strategy, accel.xla.launch;"
        "print('torch_xla' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PYPROJECT.parent / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.strip() == "False"


@pytest.mark.skipif(HAS_TORCH_XLA, reason="checks the message of an environment without it")
def test_tpu_without_torch_xla_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('should not run')\n")
    done = subprocess.run(
        [sys.executable, "-m", "accel.launch.cli", "launch", "--tpu", str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--tpu (from flag --tpu) needs torch-xla and accel-xla" in lines[0]
    assert "pip install 'accel-core[xla]'" in lines[0]
    assert "should not run" not in done.stdout


def _xla_registered() -> bool:
    from accel.state import registered_backends

    return "xla" in registered_backends()


@pytest.mark.skipif(_xla_registered(), reason="checks the message of an environment without it")
def test_use_xla_without_accel_xla_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from accel.state import PartialState, reset_state

    reset_state()
    monkeypatch.setenv("ACCEL_USE_XLA", "1")
    try:
        with pytest.raises(RuntimeError) as caught:
            PartialState()
    finally:
        reset_state()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("ACCEL_USE_XLA=1 asks for an XLA job, but accel-xla is not installed")
