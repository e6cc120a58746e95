"""The collective-backend registry, including a real third-party entry point."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import torch

from accel.state import backends
from accel.state.backends import CollectiveBackend


@pytest.fixture(autouse=True)
def fresh_plugin_cache():
    backends._plugin_backends.cache_clear()
    yield
    backends._plugin_backends.cache_clear()


def _install_plugin(tmp_path: Path, module_source: str, entry_points: dict[str, str]):
    """Write ``<module>.py`` and a dist-info declaring ``accel.backends`` entry points."""
    tag = uuid.uuid4().hex[:8]
    module = f"accel_fake_backend_{tag}"
    (tmp_path / f"{module}.py").write_text(module_source)
    dist = tmp_path / f"accel_fake_backend_{tag}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: accel-fake-backend-{tag}\nVersion: 0.1\n"
    )
    lines = "".join(f"{name} = {module}:{attr}\n" for name, attr in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[accel.backends]\n{lines}")
    return module


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - modules:
        if name.startswith("accel_fake_backend_"):
            del sys.modules[name]


def test_builtin_backends():
    assert backends.get_backend("gloo") is backends.GLOO
    assert backends.GLOO.device_type == "cpu"
    assert backends.GLOO.distributed_type == "MULTI_CPU"
    assert backends.NCCL.device_type == "cuda"
    assert backends.NCCL.distributed_type == "MULTI_GPU"
    assert backends.GLOO.is_available() is True
    assert backends.GLOO.device(3) == torch.device("cpu")
    known = backends.registered_backends()
    assert {"gloo", "mpi", "nccl", "xccl", "hccl"} <= set(known)
    assert known["gloo"] is backends.GLOO


def test_registered_backends_exported():
    import accel.state

    assert accel.state.registered_backends is backends.registered_backends
    assert accel.state.CollectiveBackend is CollectiveBackend


def test_get_backend_unknown_lists_known_names():
    with pytest.raises(ValueError) as info:
        backends.get_backend("nosuch", source="ACCEL_BACKEND")
    message = str(info.value)
    assert "ACCEL_BACKEND='nosuch'" in message
    for name in ("gloo", "mpi", "nccl"):
        assert name in message
    assert "accel.backends" in message


def test_default_backend():
    assert backends.default_backend("cpu") is backends.GLOO
    assert backends.default_backend("no-such-device") is None


def test_default_backend_skips_unavailable(monkeypatch):
    monkeypatch.setattr(CollectiveBackend, "is_available", lambda self: self.name == "mpi")
    assert backends.default_backend("cpu") is backends.MPI
    monkeypatch.setattr(CollectiveBackend, "is_available", lambda self: False)
    assert backends.default_backend("cpu") is None


def test_third_party_entry_point_is_discovered(plugin_path):
    source = (
        "from dataclasses import dataclass\n"
        "from accel.state.backends import CollectiveBackend\n"
        "FAKE = CollectiveBackend('fakeccl', 'cpu', 'MULTI_CPU', priority=1)\n"
        "@dataclass(frozen=True)\n"
        "class Fancy(CollectiveBackend):\n"
        "    name: str = 'fancyccl'\n"
        "    device_type: str = 'cpu'\n"
        "    distributed_type: str = 'MULTI_CPU'\n"
        "    def is_available(self):\n"
        "        return True\n"
        "SHADOW = CollectiveBackend('gloo', 'cuda', 'MULTI_GPU')\n"
    )
    module = _install_plugin(
        plugin_path, source, {"fakeccl": "FAKE", "fancyccl": "Fancy", "gloo": "SHADOW"}
    )
    known = backends.registered_backends()
    assert known["fakeccl"] is sys.modules[module].FAKE
    assert isinstance(known["fancyccl"], sys.modules[module].Fancy)  # class is instantiated
    assert known["fancyccl"].name == "fancyccl"
    assert known["gloo"] is backends.GLOO  # a plugin cannot shadow a built-in
    assert "gloo" not in backends._plugin_backends()
    assert backends.get_backend("fakeccl").priority == 1
    assert backends.get_backend("gloo") is backends.GLOO


def test_plugin_discovery_is_cached_until_cleared(plugin_path):
    assert "lateccl" not in backends.registered_backends()
    _install_plugin(
        plugin_path,
        "from accel.state.backends import CollectiveBackend\n"
        "LATE = CollectiveBackend('lateccl', 'cpu', 'MULTI_CPU')\n",
        {"lateccl": "LATE"},
    )
    assert "lateccl" not in backends.registered_backends()
    backends._plugin_backends.cache_clear()
    assert "lateccl" in backends.registered_backends()


def test_bad_entry_point_object_gives_type_error_naming_it(plugin_path):
    module = _install_plugin(plugin_path, "NOT_A_BACKEND = 42\n", {"brokenccl": "NOT_A_BACKEND"})
    with pytest.raises(TypeError) as info:
        backends.registered_backends()
    message = str(info.value)
    assert "'brokenccl'" in message
    assert f"{module}:NOT_A_BACKEND" in message
    assert "CollectiveBackend" in message
    assert "int" in message


def test_builtin_lookup_never_scans_entry_points(plugin_path):
    _install_plugin(plugin_path, "NOT_A_BACKEND = 42\n", {"brokenccl": "NOT_A_BACKEND"})
    assert backends.get_backend("gloo") is backends.GLOO
    assert backends.get_backend("nccl") is backends.NCCL
    with pytest.raises(TypeError):
        backends.get_backend("something-else")
