"""accel's progress bars and process-aware logger, in one process (ranks from the env)."""

from __future__ import annotations

import io
import logging

import pytest

from accel.state import PartialState, reset_state
from accel.state.process_logging import get_logger, library_logger
from accel.state.progress import SilentBar, progress_bar, progress_enabled, report_done, tqdm


@pytest.fixture(autouse=True)
def _no_state(monkeypatch: pytest.MonkeyPatch):
    reset_state()
    for name in ("ACCEL_PROGRESS", "LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    yield
    reset_state()


def test_bars_follow_accel_progress_and_local_rank(monkeypatch, capsys) -> None:
    assert not progress_enabled()  # pytest's stderr is not a terminal: silent, like CI
    assert isinstance(progress_bar([1], desc="x"), SilentBar)
    monkeypatch.setenv("ACCEL_PROGRESS", "1")
    bar = progress_bar(desc="Saving state", total=3_000_000, nbytes=True)
    bar.update(3_000_000)
    bar.close()
    shown = capsys.readouterr().err
    assert "Saving state: 100%" in shown and "3.00M/3.00M" in shown and "B/s]" in shown
    monkeypatch.setenv("LOCAL_RANK", "1")  # a launched non-main process, before any state
    assert isinstance(progress_bar([1], desc="x"), SilentBar)
    assert tqdm(range(2)).disable is True
    assert PartialState._shared_state == {}  # asking for the rank did not create the state
    monkeypatch.setenv("ACCEL_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="ACCEL_PROGRESS"):
        progress_enabled()


def test_user_tqdm_is_silenced_by_accel_progress_0_and_refuses_positional_bool(monkeypatch):
    assert tqdm(range(2), file=io.StringIO()).disable is False
    monkeypatch.setenv("ACCEL_PROGRESS", "0")
    assert tqdm(range(2)).disable is True
    with pytest.raises(ValueError, match="main_process_only=True"):
        tqdm(True, range(2))


def test_finish_line_reports_bytes_and_rate(monkeypatch, capsys) -> None:
    report_done("checkpoint ckpt written", nbytes=10**6, started=0.0)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("ACCEL_PROGRESS", "1")
    report_done("checkpoint ckpt written", nbytes=2 * 10**6, started=None)
    assert capsys.readouterr().err == "accel: checkpoint ckpt written\n"


def test_library_logger_logs_on_rank_0_only_without_creating_state(monkeypatch, caplog) -> None:
    logger = library_logger("accel.test.progress")
    with caplog.at_level(logging.WARNING, logger="accel.test.progress"):
        monkeypatch.setenv("RANK", "1")
        logger.warning("from rank 1")
        logger.warning("everyone", main_process_only=False)
        monkeypatch.setenv("RANK", "0")
        logger.warning("from rank 0")
    assert [r.getMessage() for r in caplog.records] == ["[RANK 1] everyone", "[RANK 0] from rank 0"]
    assert PartialState._shared_state == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="in_order"):
        get_logger("accel.test.progress").warning("turns", in_order=True)


def test_get_logger_takes_its_level_from_accel_log_level_then_accelerates(monkeypatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # get_logger sets the root's level too
    monkeypatch.setenv("ACCELERATE_LOG_LEVEL", "error")
    assert get_logger("accel.test.level_alias").logger.level == logging.ERROR
    monkeypatch.setenv("ACCEL_LOG_LEVEL", "debug")
    assert get_logger("accel.test.level_ours").logger.level == logging.DEBUG
    assert root.level == logging.DEBUG
