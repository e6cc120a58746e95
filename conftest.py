"""Settings and isolation every test shares, whichever folder pytest starts from."""

from __future__ import annotations

import gc
import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule

ROOT = Path(__file__).resolve().parent
# accel-compat ships `accelerate`, which never sits beside the dev group's real accelerate
# (its examples run in .venv-compat); accel-xla's need torch-xla (they run in .venv-xla).
_DOCTESTS_ELSEWHERE = {"accel-compat"}
if importlib.util.find_spec("torch_xla") is None:
    _DOCTESTS_ELSEWHERE.add("accel-xla")

# Small torch ops run 10-70x slower on 2 cores with more than one thread; subprocesses
# (torchrun workers, fresh venvs) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Bytecode caching on. An environment that sets PYTHONDONTWRITEBYTECODE (this machine's does)
# makes every interpreter of the suite compile from source each module it imports that has no
# .pyc yet: torch._dynamo, deepspeed, transformers and wandb have none in a fresh `uv sync`, so
# each subprocess importing them paid 4-8 CPU seconds of compile() (the DeepSpeed
# single-process script: 16 s CPU without, 8 s with). A .pyc is checked against its source's
# mtime and size, so nothing a test sees changes; children inherit the setting.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False

# DeepSpeed's JIT-built CPU ops (shm comm, cpu_adam) compile in minutes and are cached per
# folder; the default folder is shared by every environment of the machine, and each one's
# torch headers differ, so they rebuilt each other's. One folder per environment, set here so
# the test process, its subprocesses and the integration launches all use the same build.
os.environ.setdefault(
    "TORCH_EXTENSIONS_DIR",
    str(
        Path.home()
        / ".cache"
        / "torch_extensions"
        / ("env-" + hashlib.sha1(sys.prefix.encode()).hexdigest()[:12])
    ),
)

# Variables a launcher (accel launch, torchrun, mpirun) sets; tests must see a plain process.
_LAUNCHER_PREFIXES = (
    "ACCEL_",
    "ACCELERATE_",
    "OMPI_COMM_WORLD_",
    "PMI_",
    "MV2_COMM_WORLD_",
    "MPI_LOCAL",
)
_LAUNCHER_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "FORK_LAUNCHED")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection imported (torch, transformers, accelerate, ...) out of the
    garbage collector's sight.

    Code under test calls ``gc.collect()`` (``release_memory``, ``find_executable_batch_size``
    on every retry, ``Accelerator.free_memory``); in the test process each call otherwise walks
    about half a million objects that live for the whole session: seconds a call on this
    machine, a 300 s timeout for a 60-retry search. Objects created later are collected as
    usual; each test module freezes again what it imported (``_freeze_long_lived``).
    """
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand the frozen objects back, so that interpreter exit frees them as usual."""
    gc.unfreeze()


@pytest.fixture(autouse=True, scope="module")
def _freeze_long_lived():
    """Freeze, before a module's tests, what earlier modules imported lazily (see above)."""
    gc.collect()
    gc.freeze()


class _SourceDoctests(DoctestModule):
    """The examples of one shipped module, imported under its real name (``accel.x.y``)."""

    def _getobj(self):
        parts = list(self.nameparts)
        parts[-1] = parts[-1].removesuffix(".py")
        if parts[-1] == "__init__":
            parts.pop()
        return importlib.import_module(".".join(parts))

    @property
    def nameparts(self) -> tuple[str, ...]:
        """The path below ``packages/<dist>/src``."""
        return self.path.relative_to(ROOT / "packages").parts[2:]


def _source_dist(path: Path) -> str | None:
    """The distribution folder (``accel-ops``) when ``path`` lies in ``packages/<dist>/src``."""
    parts = (
        path.relative_to(ROOT / "packages").parts if path.is_relative_to(ROOT / "packages") else ()
    )
    return parts[0] if len(parts) >= 2 and parts[1] == "src" else None


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Source folders are plain directories to pytest, never packages.

    A pytest ``Package`` imports its ``__init__.py`` in "prepend" mode: for
    ``packages/accel-deepspeed/src/accel/deepspeed`` (``accel`` is a namespace package) that put
    ``src/accel`` on ``sys.path`` and registered accel.deepspeed as the top-level ``deepspeed``,
    so later ``from deepspeed import DeepSpeedEngine`` (transformers) failed.
    """
    if _source_dist(path) is None:
        return None
    return pytest.Dir.from_parent(parent, path=path)


class _ToolDoctests(DoctestModule):
    """The examples of one ``tools/`` script, imported as its own run sees it: by file name,
    with its folder first on ``sys.path`` (the benchmarks import their siblings that way)."""

    def collect(self):
        relative = self.path.relative_to(ROOT).as_posix()
        needed = _TOOL_REQUIRES.get(relative)
        if needed is not None and importlib.util.find_spec(needed) is None:
            pytest.skip(f"{relative} runs inside {needed}, which this environment lacks")
        return super().collect()


# hatchling is the wheels' build backend: it is installed in each build's own environment
# (tools/release/check.py builds them), not in the dev group.
_TOOL_REQUIRES = {"tools/release/metadata_hook.py": "hatchling"}
# Importing it installs the per-interpreter CPU recorder; it has no examples.
_TOOL_NOT_IMPORTED = {"tools/testtime/sitecustomize.py"}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Every docstring example of the shipped source and of ``tools/`` runs, as if with
    ``--doctest-modules``.

    Only ``packages/<dist>/src`` and ``tools``: test helpers and worker scripts are not
    imported.
    Example:
        ``uv run pytest packages/accel-ops/src`` runs accel-ops' examples, ``uv run pytest
        tools`` the tools'.
    """
    if file_path.suffix != ".py" or parent.config.getoption("doctestmodules"):
        return None  # an explicit --doctest-modules collects them itself
    if file_path.is_relative_to(ROOT / "tools"):
        if file_path.relative_to(ROOT).as_posix() in _TOOL_NOT_IMPORTED:
            return None
        return _ToolDoctests.from_parent(parent, path=file_path)
    if _source_dist(file_path) in (None, *_DOCTESTS_ELSEWHERE):
        return None
    return _SourceDoctests.from_parent(parent, path=file_path)


@pytest.fixture(autouse=True)
def fresh_state():
    """Each test starts from an empty accel state and a launcher-free environment."""
    import accel.state

    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(_LAUNCHER_PREFIXES) or key in _LAUNCHER_NAMES:
            del os.environ[key]
    accel.state.reset_state()
    try:
        yield
    finally:
        accel.state.reset_state()
        os.environ.clear()
        os.environ.update(saved)
