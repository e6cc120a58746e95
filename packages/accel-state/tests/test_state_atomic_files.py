"""atomic_open / atomic_path: whole files or none, mode 0o644, nothing left behind on error."""

from __future__ import annotations

import os

import pytest

from accel.state.atomic_files import FILE_MODE, atomic_open, atomic_path


def test_atomic_open_replaces_whole_file_with_mode_644(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    os.chmod(target, 0o600)
    with atomic_open(target, "w") as handle:
        handle.write("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"
    assert os.stat(target).st_mode & 0o777 == FILE_MODE
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_error_keeps_old_file_and_removes_temporary(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_parent_folder_created_and_unsynced_write(tmp_path):
    target = tmp_path / "a" / "b" / "w.dat"
    with atomic_open(target, fsync=False) as handle:
        handle.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_directory_target_and_read_mode_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"), atomic_open(tmp_path):
        pass
    with pytest.raises(ValueError, match="mode='r'"), atomic_open(tmp_path / "x", "r"):
        pass
