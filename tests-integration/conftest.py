"""Fixtures that run each multi-process worker once per session, several at a time.

Importing torch takes seconds, so every worker script is launched once and many tests read
its report. After collection, every launch the selected tests need is started in a small
thread pool (two jobs at once), so their start-up costs overlap; a test then waits only for
the launch it reads.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from launching import LaunchResult, free_port, run_distributed, run_processes

LAUNCH_TIMEOUT = 150.0  # seconds per launch; a hung collective fails the tests, not CI
CONCURRENT_LAUNCHES = 2


def _mpi_envs(kind: str) -> list[dict[str, str]]:
    """Per-process environments an MPI launcher would set, for 2 processes on one node."""
    port = str(free_port())
    if kind == "openmpi":
        return [
            {
                "OMPI_COMM_WORLD_RANK": str(rank),
                "OMPI_COMM_WORLD_SIZE": "2",
                "OMPI_COMM_WORLD_LOCAL_RANK": str(rank),
                "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
                "MASTER_PORT": port,
            }
            for rank in range(2)
        ]
    return [{"PMI_RANK": str(rank), "PMI_SIZE": "2", "MASTER_PORT": port} for rank in range(2)]


# fixture name -> how to produce its LaunchResult (given a fresh output directory)
LAUNCHES: dict[str, Callable[[Path], LaunchResult]] = {
    "state_run": lambda out: run_distributed(
        "state_checks.py", timeout=LAUNCH_TIMEOUT, out_dir=out
    ),
    "ops_run": lambda out: run_distributed("ops_checks.py", timeout=LAUNCH_TIMEOUT, out_dir=out),
    "debug_run": lambda out: run_distributed(
        "debug_checks.py", env={"ACCEL_DEBUG_MODE": "1"}, timeout=LAUNCH_TIMEOUT, out_dir=out
    ),
    "debug_alias_preinit_run": lambda out: run_distributed(
        "debug_checks.py",
        env={"ACCELERATE_DEBUG_MODE": "1"},
        args=["--preinit"],
        timeout=LAUNCH_TIMEOUT,
        out_dir=out,
    ),
    "openmpi_run": lambda out: run_processes(
        "mpi_checks.py", _mpi_envs("openmpi"), LAUNCH_TIMEOUT, out, name="Open MPI variables"
    ),
    "pmi_run": lambda out: run_processes(
        "mpi_checks.py", _mpi_envs("pmi"), LAUNCH_TIMEOUT, out, name="PMI variables"
    ),
    "compat_accel_run": lambda out: run_distributed(
        "compat_scenario.py",
        args=["accel"],
        env={"ACCELERATE_USE_CPU": "1"},
        timeout=LAUNCH_TIMEOUT,
        out_dir=out,
    ),
    "compat_accelerate_run": lambda out: run_distributed(
        "compat_scenario.py",
        args=["accelerate"],
        env={"ACCELERATE_USE_CPU": "1"},
        timeout=LAUNCH_TIMEOUT,
        out_dir=out,
    ),
    # test_core_distributed.py: the Accelerator on 2 processes vs 1, and vs Accelerate
    "core_run": lambda out: run_distributed("core_checks.py", timeout=240.0, out_dir=out),
    "core_reference_run": lambda out: run_processes(
        "core_checks.py", [{"CORE_IT_MODE": "reference"}], 240.0, out, name="core reference"
    ),
    "migration_run": lambda out: run_distributed("migration_script.py", timeout=240.0, out_dir=out),
    "sbs_accel_run": lambda out: run_distributed(
        "sbs_train.py", args=["accel"], timeout=240.0, out_dir=out
    ),
    "sbs_accelerate_run": lambda out: run_distributed(
        "sbs_train.py", args=["accelerate"], timeout=240.0, out_dir=out
    ),
    # test_ndp_distributed.py: ParallelismConfig (FSDP2 / HSDP / TP on one DeviceMesh)
    "ndp2_run": lambda out: run_distributed(
        "ndp_checks.py", args=["2"], timeout=600.0, out_dir=out
    ),
    "ndp4_run": lambda out: run_distributed(
        "ndp_checks.py", nproc=4, args=["4"], timeout=600.0, out_dir=out
    ),
    # ParallelismConfig(sp_size=2): DeepSpeed Ulysses on 2 processes (loads DeepSpeed's CPU ops)
    "sp_run": lambda out: run_distributed("sp_checks.py", timeout=600.0, out_dir=out),
    # test_deepspeed_distributed.py: real DeepSpeed ZeRO on 2 processes. The first engine of a
    # process loads DeepSpeed's compiled CPU ops; the offload launch may compile
    # DeepSpeedCPUAdam (1-2 min on a clean machine, then cached in ~/.cache/torch_extensions).
    "deepspeed_run": lambda out: run_distributed("deepspeed_checks.py", timeout=600.0, out_dir=out),
    "deepspeed_offload_run": lambda out: run_distributed(
        "deepspeed_checks.py", args=["--offload"], timeout=900.0, out_dir=out
    ),
}


class LaunchPool:
    """Runs each named launch at most once, in background threads, and hands out results.

    Example:
        >>> pool = LaunchPool(Path(tempfile.mkdtemp()))  # doctest: +SKIP
        >>> pool.result("ops_run").status("gather_tensor", 0)  # doctest: +SKIP
        'ok'
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._executor = ThreadPoolExecutor(CONCURRENT_LAUNCHES, thread_name_prefix="launch")
        self._futures: dict[str, Future[LaunchResult]] = {}

    def start(self, name: str) -> None:
        """Queue launch ``name`` unless it is already queued or done."""
        if name not in self._futures:
            self._futures[name] = self._executor.submit(LAUNCHES[name], self.root / name)

    def result(self, name: str) -> LaunchResult:
        """Wait for launch ``name`` (starting it if needed) and return its result."""
        self.start(name)
        return self._futures[name].result()

    def close(self) -> None:
        """Wait for queued launches (each is bounded by its own timeout) and stop the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)


_pool: LaunchPool | None = None


def _get_pool() -> LaunchPool:
    global _pool
    if _pool is None:
        _pool = LaunchPool(Path(tempfile.mkdtemp(prefix="accel-it-")))
    return _pool


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start, in the background, every launch that a selected test will read."""
    if session.config.option.collectonly:
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for name in LAUNCHES:
        if name in wanted:
            _get_pool().start(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the pool; keep the workers' reports on disk only if something failed."""
    if _pool is None:
        return
    _pool.close()
    if exitstatus == 0:
        shutil.rmtree(_pool.root, ignore_errors=True)


def _launch_fixture(name: str):
    @pytest.fixture(scope="session", name=name)
    def fixture() -> LaunchResult:
        return _get_pool().result(name)

    fixture.__doc__ = f"The LaunchResult of the {name!r} launch (run once per session)."
    return fixture


for _name in LAUNCHES:
    globals()[f"_fixture_{_name}"] = _launch_fixture(_name)
