"""Settings and isolation every test shares, whichever folder pytest starts from."""

from __future__ import annotations

import os

import pytest

# Small torch ops run 10-70x slower on 2 cores with more than one thread; subprocesses
# (torchrun workers, fresh venvs) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
