"""Fixtures that run each multi-process worker once per session, in the background.

Importing torch takes seconds, so every worker script is launched once and many tests read
its report. After collection, every launch the selected tests need (these and the jobs test
modules declare with ``background.background``) is started in a small thread pool
(``background.py``), beside the in-process tests; a test then waits only for the launch it
reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from background import (
    CONCURRENT_JOBS,
    JOBS,
    Job,
    close,
    duration_report,
    pool,
    register,
    start_in_order,
    wait_allowance,
)
from launching import LaunchResult, free_port, run_distributed, run_processes

LAUNCH_TIMEOUT = 150.0  # seconds per launch; a hung collective fails the tests, not CI


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
    # torchrun itself (its elastic agent hosts the store) for the state checks: torchrun
    # compatibility stays covered; the other launches use the torch-free spawner (launching.py)
    "state_run": lambda out: run_distributed(
        "state_checks.py", timeout=LAUNCH_TIMEOUT, out_dir=out, launcher="torchrun"
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
    # test_deepspeed_distributed.py and test_ndp_distributed.py: real DeepSpeed on 2 processes,
    # one launch (DeepSpeed's import and CPU ops loaded once per rank): ZeRO-1/2/3 and the rest,
    # then CPU offload (compiles DeepSpeedCPUAdam on a clean machine: 1-2 min, then cached in
    # TORCH_EXTENSIONS_DIR), then Ulysses sequence parallelism (ParallelismConfig(sp_size=2),
    # workers/sp_checks.py, last: it replaces transformers' sdpa attention in the process).
    "deepspeed_run": lambda out: run_distributed(
        "deepspeed_checks.py", timeout=1200.0, out_dir=out
    ),
    # test_ndp_distributed.py: Ulysses sp_size=2 x 2 data-parallel groups on 4 processes
    # (workers/sp4_checks.py), only the comparison with the 1-process run
    "deepspeed_sp4_run": lambda out: run_distributed(
        "sp4_checks.py", nproc=4, timeout=900.0, out_dir=out
    ),
}


# Rough seconds of each launch on an idle 2-core machine (queue order: longest first) and its
# timeout (what a test may wait for it).
_COSTS: dict[str, tuple[float, float]] = {
    # ~30 s once DeepSpeed's CPU ops are built; a new environment builds them here (minutes)
    "deepspeed_run": (240.0, 1200.0),
    # 4 DeepSpeed ranks on 2 cores, ops built: 46-78 s beside the 2-process DeepSpeed launch
    "deepspeed_sp4_run": (80.0, 900.0),
    "ndp4_run": (25.0, 600.0),
    "ndp2_run": (20.0, 600.0),
    "core_run": (20.0, 240.0),
    "core_reference_run": (8.0, 240.0),
    "migration_run": (14.0, 240.0),
    "sbs_accel_run": (10.0, 240.0),
    "sbs_accelerate_run": (17.0, 240.0),
}

for _name, _run in LAUNCHES.items():
    _seconds, _timeout = _COSTS.get(_name, (6.0, LAUNCH_TIMEOUT))
    register(Job(_name, _run, _seconds, _timeout))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that reads a background job may first wait for the jobs queued before it: its
    timeout grows by that much (each job bounds itself with its own timeout)."""
    wanted = _wanted(items)
    allowance = wait_allowance(wanted)
    if not allowance:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        if not wanted.intersection(_reads(item)):
            continue
        marker = item.get_closest_marker("timeout")
        own = float(marker.args[0]) if marker and marker.args else default
        if own:
            item.add_marker(pytest.mark.timeout(own + allowance))


def _reads(item: pytest.Item) -> set[str]:
    """The fixtures ``item`` uses, also those it asks for by a parameter's name
    (``request.getfixturevalue(launch)``)."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names.update(value for value in callspec.params.values() if isinstance(value, str))
    return names


def _wanted(items: list[pytest.Item]) -> set[str]:
    """The background jobs the tests ``items`` read."""
    return {name for item in items for name in _reads(item)} & JOBS.keys()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start, in the background, every job that a selected test will read (longest first)."""
    if session.config.option.collectonly:
        return
    start_in_order(_wanted(session.items))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the background time went: each job's wall seconds."""
    lines = duration_report()
    if lines:
        terminalreporter.section(f"background jobs (wall seconds, {CONCURRENT_JOBS} at a time)")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the pool; keep the workers' reports on disk only if something failed."""
    close(keep_files=exitstatus != 0)


def _launch_fixture(name: str):
    @pytest.fixture(scope="session", name=name)
    def fixture() -> LaunchResult:
        return pool().result(name)

    fixture.__doc__ = f"The LaunchResult of the {name!r} launch (run once per session)."
    return fixture


for _name in LAUNCHES:
    globals()[f"_fixture_{_name}"] = _launch_fixture(_name)
