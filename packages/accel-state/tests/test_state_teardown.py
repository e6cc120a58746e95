"""accel.state.teardown: what accel created is destroyed at exit, newest first, default last."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from accel.state import teardown
from accel.state.teardown import (
    register_process_group,
    register_shutdown,
    run_teardown,
    wait_for_idle_gloo_workers,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads thread states from /proc (Linux)"
)


def _init_default(tmp_path: Path, name: str = "store") -> None:
    store = dist.FileStore(str(tmp_path / name), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)


@pytest.fixture(autouse=True)
def _clean_world():
    run_teardown()
    yield
    run_teardown()
    if dist.is_initialized():
        dist.destroy_process_group()


def test_destroys_subgroups_then_default(tmp_path, monkeypatch):
    _init_default(tmp_path)
    register_process_group()
    first, second = dist.new_group(backend="gloo"), dist.new_group(backend="gloo")
    register_process_group(first)
    register_process_group(second)
    register_process_group(second)  # twice is once
    destroyed = []
    real = dist.destroy_process_group

    def recording(group=None):
        destroyed.append("default" if group is None else ("first", "second")[group is second])
        real(group)

    monkeypatch.setattr(dist, "destroy_process_group", recording)  # records, then destroys
    run_teardown()
    assert destroyed == ["second", "first", "default"]
    assert not dist.is_initialized()


def test_leaves_a_default_group_it_did_not_create(tmp_path):
    _init_default(tmp_path)
    group = dist.new_group(backend="gloo")
    register_process_group(group)
    run_teardown()
    assert dist.is_initialized()
    with pytest.raises(ValueError, match="Invalid process group"):
        dist.destroy_process_group(group)  # it was destroyed by the teardown


def test_leaves_a_newer_default_group_alone(tmp_path):
    _init_default(tmp_path, "old")
    register_process_group()
    dist.destroy_process_group()  # e.g. end_training
    _init_default(tmp_path, "new")  # the user's own group
    run_teardown()
    assert dist.is_initialized()


def test_tolerates_groups_already_destroyed(tmp_path):
    _init_default(tmp_path)
    register_process_group()
    group = dist.new_group(backend="gloo")
    register_process_group(group)
    dist.destroy_process_group(group)
    run_teardown()
    assert not dist.is_initialized()
    run_teardown()  # idempotent


def test_shutdown_callbacks_run_first_newest_first_and_failures_are_reported(tmp_path, capsys):
    _init_default(tmp_path)
    register_process_group()
    seen = []
    register_shutdown(lambda: seen.append(("old", dist.is_initialized())), "old work")

    def failing() -> None:
        seen.append(("new", dist.is_initialized()))
        raise OSError("disk full")

    register_shutdown(failing, "the new writer")
    run_teardown()
    assert seen == [("new", True), ("old", True)]
    assert "accel: at exit, the new writer failed: OSError: disk full" in capsys.readouterr().err
    assert not dist.is_initialized()


def test_register_without_a_process_group_raises():
    with pytest.raises(RuntimeError, match="no default process group"):
        register_process_group()


@pytest.mark.slow
def test_runs_at_interpreter_exit(tmp_path):
    """A real exit: the script returns with two live groups; the atexit handler destroys them
    (a handler registered before accel's runs after it and sees the result)."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit
            import torch.distributed as dist
            from accel.state.teardown import register_process_group
            atexit.register(lambda: print("initialized at the end:", dist.is_initialized()))
            store = dist.FileStore({str(tmp_path / "store")!r}, 1)
            dist.init_process_group("gloo", store=store, rank=0, world_size=1)
            register_process_group()
            register_process_group(dist.new_group(backend="gloo"))
            print("done")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["done", "initialized", "at", "the", "end:", "False"]


@linux_only
def test_finds_torchs_gloo_worker_threads_by_name(tmp_path):
    """The waiting keys on the name torch gives its gloo workers: a torch that renames them
    fails here instead of silently skipping the wait."""
    _init_default(tmp_path)
    register_process_group()
    tensor = torch.ones(4)
    dist.all_reduce(tensor)
    assert teardown._gloo_workers_running("/proc/self/task") is not None
    assert wait_for_idle_gloo_workers()


def _name_this_thread(name: bytes) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    assert libc.prctl(15, name, 0, 0, 0) == 0  # PR_SET_NAME


@linux_only
def test_waits_while_a_gloo_worker_runs_and_gives_up_at_the_limit():
    """A thread named like a gloo worker spins for 0.4 s, then blocks: the wait lasts until
    it blocks, and a shorter limit returns False at the limit."""
    named, release = threading.Event(), threading.Event()

    def worker() -> None:
        _name_this_thread(teardown.GLOO_WORKER_THREAD.encode())
        named.set()
        end = time.monotonic() + 0.4
        while time.monotonic() < end:
            pass
        release.wait()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        named.wait()
        started = time.monotonic()
        assert not wait_for_idle_gloo_workers(limit=0.1)
        assert wait_for_idle_gloo_workers(limit=5.0)
        assert time.monotonic() - started >= 0.35
    finally:
        release.set()
        thread.join()
