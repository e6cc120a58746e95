"""A clean end of a script: what accel started is stopped at interpreter exit, in order.

A gloo process that exits with its process groups still alive can abort while the C++
runtime tears them down ("terminate called without an active exception", SIGABRT), so a job
that finished its work is reported as failed. accel therefore registers what it creates here
and, at interpreter exit (``atexit``), whether or not the script called ``end_training``:

1. runs the shutdown callbacks (e.g. the asynchronous checkpoint writer waits for its
   thread), newest first;
2. destroys the process groups accel created with ``new_group``, newest first;
3. destroys the default process group last, and only if accel created it and it is still the
   default group (a group the user created, or one already destroyed, is left alone). On gloo
   the ranks first meet in a barrier bounded by :data:`EXIT_BARRIER_SECONDS`, so no rank
   destroys its group (and exits) while a peer still uses it; a peer that never arrives
   (crashed, or stuck) delays the exit by that bound, never forever;
4. before and after the groups go, waits (at most :data:`SETTLE_SECONDS`) until torch's gloo
   worker threads are idle. Such a thread frees each finished collective itself, and a
   collective launched from ``backward`` holds a Python object (the ``contextvars`` context
   torch stashes for the autograd engine), so freeing it takes the GIL. If the interpreter
   is already finalizing by then, Python ends that thread inside a C++ destructor and the
   process aborts, even when the script destroyed its process group itself. A loaded machine
   makes the window wide (about 1 exit in 100 with 3 jobs on 2 cores).

Groups already destroyed (by ``end_training``, ``reset_state(destroy_process_group=True)`` or
the script itself) are skipped. :func:`run_teardown` does the same on demand; it is
idempotent.

Example:
    >>> import torch.distributed as dist
    >>> from accel.state.teardown import register_process_group, run_teardown
    >>> dist.init_process_group("gloo", rank=0, world_size=1)  # doctest: +SKIP
    >>> register_process_group()  # the default group, created by this code  # doctest: +SKIP
    >>> register_process_group(dist.new_group(backend="gloo"))  # doctest: +SKIP
    >>> run_teardown()
    >>> dist.is_initialized()
    False
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

_lock = threading.Lock()
_groups: list[Any] = []  # subgroups, oldest first
_default: list[Any] = []  # at most one: the default group accel created
_callbacks: list[tuple[str, Callable[[], None]]] = []
_installed = False
EXIT_BARRIER_SECONDS = 30.0
SETTLE_SECONDS = 2.0
GLOO_WORKER_THREAD = "pt_gloo_runloop"  # the name torch gives ProcessGroupGloo's workers


def _install() -> None:
    global _installed
    if not _installed:
        atexit.register(run_teardown)
        _installed = True


def register_process_group(group: Any = None) -> None:
    """Have ``group`` destroyed at interpreter exit (``None``: the current default group).

    Call it right after creating the group. Pass ``None`` only when your code created the
    default group (``init_process_group``): it is then destroyed last, after every subgroup.

    Example:
        >>> group = torch.distributed.new_group(backend="gloo")  # doctest: +SKIP
        >>> register_process_group(group)  # doctest: +SKIP
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "register_process_group: torch.distributed has no default process group; call it "
            "after init_process_group / new_group created the group to register"
        )
    with _lock:
        if group is None:
            _default[:] = [dist.group.WORLD]
        elif not any(known is group for known in _groups):
            _groups.append(group)
        _install()


def install_exit_teardown() -> None:
    """Have :func:`run_teardown` run at interpreter exit even if nothing is registered.

    For a process group accel adopts (the script called ``init_process_group`` itself): the
    group stays the script's, but the exit still waits for idle gloo workers.

    Example:
        >>> install_exit_teardown()
    """
    with _lock:
        _install()


def register_shutdown(callback: Callable[[], None], name: str) -> None:
    """Run ``callback`` at interpreter exit before any process group is destroyed.

    For background work that uses a process group (a writer thread agreeing over its own
    group): the callback waits for or stops it. Callbacks run newest first; an exception is
    reported on stderr under ``name`` and the teardown goes on.

    Example:
        >>> register_shutdown(lambda: None, "nothing to stop")
    """
    with _lock:
        _callbacks.append((name, callback))
        _install()


def _destroy(group: Any) -> None:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return  # the default group is gone, and every subgroup with it
    with contextlib.suppress(ValueError):  # "Invalid process group specified": destroyed
        dist.destroy_process_group(group)


def run_teardown() -> None:
    """Stop registered background work, then destroy accel's process groups (newest first,
    the default group last). Runs at interpreter exit by itself; safe to call earlier and
    more than once.

    Example:
        >>> run_teardown()
    """
    with _lock:
        callbacks = list(reversed(_callbacks))
        groups = list(reversed(_groups))
        default = list(_default)
        _callbacks.clear()
        _groups.clear()
        _default.clear()
    for name, callback in callbacks:
        try:
            callback()
        except BaseException as error:  # the exit goes on; say what went wrong
            print(
                f"accel: at exit, {name} failed: {type(error).__name__}: {error}", file=sys.stderr
            )
    dist = torch.distributed
    owns_default = (
        bool(default)
        and dist.is_available()
        and dist.is_initialized()
        and dist.group.WORLD is default[0]
    )
    wait_for_idle_gloo_workers()
    if owns_default:
        _meet_peers(dist)
    for group in groups:
        _destroy(group)
    if owns_default:
        _destroy(None)
    wait_for_idle_gloo_workers()


def _meet_peers(dist: Any) -> None:
    """Wait (bounded) until every rank reached its teardown; gloo only (NCCL cannot bound it)."""
    if dist.get_world_size() < 2 or "gloo" not in str(dist.get_backend()):
        return
    from datetime import timedelta

    with contextlib.suppress(Exception):  # a missing peer: exit anyway, after the bound
        dist.monitored_barrier(timeout=timedelta(seconds=EXIT_BARRIER_SECONDS))


def wait_for_idle_gloo_workers(limit: float = SETTLE_SECONDS, poll: float = 0.005) -> bool:
    """Sleep (the GIL released) until no gloo worker thread of this process is running.

    Idle means none of torch's ``pt_gloo_runloop`` threads was runnable at three polls in a
    row, ``poll`` seconds apart: each has freed its last collective and waits for the next.
    Returns ``True`` once idle (at once without such threads), ``False`` after ``limit``
    seconds. Reads ``/proc/self/task`` (Linux); elsewhere it sleeps three polls and returns
    ``True``.

    Example:
        >>> wait_for_idle_gloo_workers()
        True
    """
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        time.sleep(3 * poll)
        return True
    deadline = time.monotonic() + limit
    quiet = 0
    while True:
        busy = _gloo_workers_running(tasks)
        if busy is None:
            return True
        quiet = 0 if busy else quiet + 1
        if quiet >= 3:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def _gloo_workers_running(tasks: str) -> bool | None:
    """Whether a gloo worker thread is runnable now (``None``: this process has none)."""
    found = False
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/comm") as comm:
                if comm.read().strip() != GLOO_WORKER_THREAD:
                    continue
            with open(f"{tasks}/{tid}/stat") as stat:
                fields = stat.read()
        except OSError:  # the thread ended between listdir and open
            continue
        found = True
        if fields[fields.rindex(")") + 2] == "R":
            return True
    return False if found else None
