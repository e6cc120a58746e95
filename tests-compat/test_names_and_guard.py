"""The ``accelerate`` name map: every mapped name resolves, unmapped ones fail in one line,
the version clients read is honest, and the real accelerate beside it is refused."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

_lazy = pytest.importorskip("accelerate._lazy", reason="needs .venv-compat (accel's accelerate)")
NotInAccelError = _lazy.NotInAccelError
MISSING, NAMES = _lazy.MISSING, _lazy.NAMES


def test_every_mapped_name_resolves_to_an_accel_object() -> None:
    count = 0
    for module, table in NAMES.items():
        served = importlib.import_module(module)
        for name, target in table.items():
            value = getattr(served, name)
            assert value is not None or name.isupper(), f"{module}.{name} -> {target} is None"
            if hasattr(value, "__module__") and callable(value):
                assert value.__module__.startswith("accel."), (module, name, value.__module__)
            count += 1
    missing = sum(len(table) for table in MISSING.values())
    print(f"accelerate compat: {count} names served by accel, {missing} not implemented")
    assert count > 500


def test_top_level_and_utils_names_clients_import() -> None:
    from accelerate import Accelerator, PartialState, init_empty_weights, skip_first_batches
    from accelerate.utils import DistributedType, extract_model_from_parallel, get_max_memory

    assert Accelerator.__module__.startswith("accel.core")
    assert PartialState.__module__.startswith("accel.state")
    assert all(callable(f) for f in (init_empty_weights, skip_first_batches, get_max_memory))
    assert DistributedType.MULTI_CPU.value == "MULTI_CPU"
    assert callable(extract_model_from_parallel)


def test_unimplemented_name_is_one_line_naming_it_and_the_area() -> None:
    module, table = next((m, t) for m, t in MISSING.items() if t)
    name, area = next(iter(table.items()))
    served = importlib.import_module(module)
    with pytest.raises(NotInAccelError) as info:
        getattr(served, name)
    message = str(info.value)
    assert "\n" not in message and f"{module}.{name}" in message and area in message
    code = f"from {module} import {name}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and message in proc.stderr.splitlines()[-1]


def test_unknown_name_is_a_plain_attribute_error() -> None:
    import accelerate

    with pytest.raises(AttributeError, match="no_such_name"):
        accelerate.no_such_name  # noqa: B018
    assert getattr(accelerate, "no_such_name", "default") == "default"


def test_version_clients_read_is_the_api_level_with_the_accel_label() -> None:
    import accelerate
    from packaging.version import Version
    from transformers.utils import is_accelerate_available

    assert version("accelerate") == accelerate.__version__
    assert accelerate.__version__.startswith("1.15.0+accel")
    assert Version(accelerate.__version__) >= Version("1.1.0")
    assert is_accelerate_available("1.1.0")


def test_real_accelerate_beside_it_is_refused_in_one_line(tmp_path: Path) -> None:
    info = tmp_path / "accelerate_kt-1.14.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: accelerate-kt\nVersion: 1.14.0\n")
    (info / "top_level.txt").write_text("accelerate\n")
    (info / "RECORD").write_text("accelerate/__init__.py,,\n")
    proc = subprocess.run(
        [sys.executable, "-c", "import accelerate"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("accelerate._guard.AccelerateConflictError: ")
    assert "accelerate-kt 1.14.0" in last and "uninstall one of them" in last
