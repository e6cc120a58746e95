"""Jobs that start real processes, run in background threads from the end of collection.

Importing torch costs seconds per process, and a pytest process keeps one core busy at most:
on a 2-core machine a launch run inside a test's setup leaves the test process idle while it
waits, and the in-process tests leave the second core idle. So every job a selected test
needs is queued when collection finishes (longest first) and runs in a small thread pool
beside the in-process tests; a test then waits only for the job it reads.

A test module declares a job with :func:`background`; the function becomes a session fixture
of the same name whose value is what the job returned::

    @background(seconds=40)
    def saving_run(out: Path) -> LaunchResult:
        return run_distributed("saving_checks.py", timeout=150.0, out_dir=out)

Each job bounds itself (the launch helpers kill a job's process tree after its timeout), so
a test waiting for a queued job gets the time the jobs ahead of it may take
(:func:`wait_allowance`) on top of pytest's per-test timeout.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from launching import environment_base

# Three at a time: most launches spend part of their time waiting (process start, rendezvous,
# a rank waiting for the other, teardown), and two jobs left the cores idle in those waits.
CONCURRENT_JOBS = 3
# The environment before any test ran: what every background job starts from.
SESSION_ENVIRON = dict(os.environ)


@dataclass(frozen=True)
class Job:
    """A background job: ``run(out_dir)`` produces the value of the fixture ``name``.

    ``seconds`` is a rough cost on an idle 2-core machine (queue order: longest first);
    ``timeout`` bounds the job (its launches' timeouts added up).

    Example:
        >>> Job("demo", lambda out: out.name, seconds=1, timeout=5).name
        'demo'
    """

    name: str
    run: Callable[[Path], Any]
    seconds: float
    timeout: float


JOBS: dict[str, Job] = {}


def register(job: Job) -> None:
    """Add ``job`` to the jobs that can run in the background (one name, one job).

    Example:
        >>> register(Job("doc_demo", lambda out: 1, seconds=0, timeout=1))
        >>> JOBS.pop("doc_demo").seconds
        0
    """
    known = JOBS.get(job.name)
    if known is not None and known.run is not job.run:
        raise ValueError(f"background job {job.name!r} is declared twice")
    JOBS[job.name] = job


# job name -> wall seconds it took (filled as jobs finish; printed at the end of the session)
DURATIONS: dict[str, float] = {}


def _run(job: Job, out_dir: Path) -> Any:
    """Run ``job`` in this (pool) thread, its launches starting from ``SESSION_ENVIRON``."""
    started = time.monotonic()
    try:
        with environment_base(SESSION_ENVIRON):
            return job.run(out_dir)
    finally:
        DURATIONS[job.name] = time.monotonic() - started


def duration_report() -> list[str]:
    """One line per finished job, longest first: its wall seconds and its declared estimate.

    Example:
        >>> DURATIONS["doc_timed"] = 2.0
        >>> register(Job("doc_timed", lambda out: 1, seconds=3, timeout=5))
        >>> duration_report()[0]
        '    2.0 s  doc_timed (estimate 3 s)'
        >>> _ = JOBS.pop("doc_timed"), DURATIONS.pop("doc_timed")
    """
    ranked = sorted(DURATIONS.items(), key=lambda item: -item[1])
    return [
        f"{seconds:7.1f} s  {name} (estimate {JOBS[name].seconds:g} s)"
        for name, seconds in ranked
        if name in JOBS
    ]


class JobPool:
    """Runs each named job at most once, in background threads, and hands out results.

    Example:
        >>> register(Job("doc_pool", lambda out: out.name, seconds=0, timeout=1))
        >>> pool = JobPool(Path(tempfile.mkdtemp()))
        >>> pool.result("doc_pool")
        'doc_pool'
        >>> pool.close(); _ = JOBS.pop("doc_pool")
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._executor = ThreadPoolExecutor(CONCURRENT_JOBS, thread_name_prefix="background")
        self._futures: dict[str, Future[Any]] = {}

    def start(self, name: str) -> None:
        """Queue job ``name`` unless it is already queued or done."""
        if name not in self._futures:
            self._futures[name] = self._executor.submit(_run, JOBS[name], self.root / name)

    def result(self, name: str) -> Any:
        """Wait for job ``name`` (starting it if needed) and return its value."""
        self.start(name)
        return self._futures[name].result()

    def close(self) -> None:
        """Wait for queued jobs (each is bounded by its own timeout) and stop the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)


_pool: JobPool | None = None


def pool() -> JobPool:
    """The session's pool (created on first use, in a new temporary directory).

    Example:
        >>> pool() is pool()
        True
    """
    global _pool
    if _pool is None:
        _pool = JobPool(Path(tempfile.mkdtemp(prefix="accel-it-")))
    return _pool


def start_in_order(names: set[str]) -> list[str]:
    """Queue the jobs ``names``, longest first; returns the order.

    Example:
        >>> register(Job("doc_a", lambda out: 1, seconds=1, timeout=1))
        >>> register(Job("doc_b", lambda out: 2, seconds=9, timeout=1))
        >>> start_in_order({"doc_a", "doc_b"})
        ['doc_b', 'doc_a']
        >>> [pool().result(n) for n in ("doc_a", "doc_b")]
        [1, 2]
        >>> _ = JOBS.pop("doc_a"), JOBS.pop("doc_b")
    """
    order = sorted(names & JOBS.keys(), key=lambda name: -JOBS[name].seconds)
    for name in order:
        pool().start(name)
    return order


def wait_allowance(names: set[str]) -> float:
    """Seconds a test may wait for the jobs ``names`` queued before the one it reads: the sum of
    their timeouts spread over the pool's threads (each job kills itself at its timeout).

    Example:
        >>> register(Job("doc_c", lambda out: 1, seconds=1, timeout=100))
        >>> wait_allowance({"doc_c"})
        100.0
        >>> _ = JOBS.pop("doc_c")
    """
    timeouts = [JOBS[name].timeout for name in names & JOBS.keys()]
    if not timeouts:
        return 0.0
    return float(max(max(timeouts), sum(timeouts) / CONCURRENT_JOBS))


def background(*, seconds: float, timeout: float) -> Callable[[Callable[[Path], Any]], Any]:
    """Declare ``function(out_dir)`` as a background job; returns a session fixture named like
    the function, whose value is the job's result (see the module docstring).

    Example:
        >>> @background(seconds=1, timeout=5)
        ... def doc_job(out):
        ...     return 42
        >>> JOBS.pop("doc_job").timeout
        5
    """

    def declare(function: Callable[[Path], Any]) -> Any:
        name = function.__name__
        register(Job(name, function, seconds, timeout))

        @pytest.fixture(scope="session", name=name)
        def fixture() -> Any:
            return pool().result(name)

        fixture.__doc__ = f"The value of background job {name!r} (run once per session)."
        return fixture

    return declare


def close(keep_files: bool) -> None:
    """Wait for the queued jobs, stop the threads; delete the jobs' folders unless
    ``keep_files`` (something failed: the workers' reports stay on disk).

    Example:
        >>> close(keep_files=False)
    """
    global _pool
    if _pool is None:
        return
    import shutil

    _pool.close()
    if not keep_files:
        shutil.rmtree(_pool.root, ignore_errors=True)
    _pool = None
