"""The cross-process operation check of debug mode, in one process (2 processes: tests-integration)."""

from __future__ import annotations

import sys

import pytest

from accel.state import DistributedOperationException, PartialState
from accel.state.operation_check import call_site, check_operation, format_records


def test_call_site_is_the_first_frame_outside_the_library():
    line = sys._getframe().f_lineno + 1
    assert call_site() == f"{__file__}:{line}"


def test_call_site_skips_accel_frames():
    # a function of an accel module calls call_site(): the site is this test's line
    namespace = {"__name__": "accel.fake_module", "call_site": call_site}
    exec("def inner():\n    return call_site()", namespace)
    line = sys._getframe().f_lineno + 1
    assert namespace["inner"]() == f"{__file__}:{line}"


def test_format_records_names_each_process_operation_and_site():
    text = format_records(
        [("gather", "float32[4]", "a.py:3"), ("wait_for_everyone", "barrier", "a.py:9")]
    )
    assert text.splitlines() == [
        "  process 0: gather(float32[4]) at a.py:3",
        "  process 1: wait_for_everyone(barrier) at a.py:9",
    ]


def test_one_process_has_nothing_to_compare():
    assert check_operation("gather", "float32[4]", num_processes=1, problems=[]) is None
    # no process group: one process
    assert check_operation("wait_for_everyone", "barrier") is None


def test_barrier_in_debug_mode_with_one_process(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ACCEL_DEBUG_MODE", "1")
    state = PartialState()
    assert state.debug
    state.wait_for_everyone()


def test_exception_is_one_class_under_both_import_paths():
    from accel.ops import DistributedOperationException as from_ops
    from accel.ops.exceptions import DistributedOperationException as from_ops_module

    assert from_ops is DistributedOperationException is from_ops_module
