"""Checkpoint folders: finding the newest complete one, publishing a finished save, pruning.

Everything is written into a hidden sibling folder (``.checkpoint_3.partial``), flushed to
disk, then renamed into place by the main process after every process has finished; the
marker is written last. ``total_limit`` prunes only complete checkpoints, after the new one is
in place, never the newest.

Example:
    >>> is_complete_checkpoint("does/not/exist")
    False
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from accel.core.checkpoint.layout import (
    CHECKPOINT_RE,
    COMPLETE_MARKER,
    DELETING_SUFFIX,
    PathLike,
)
from accel.state.process_logging import library_logger

__all__ = [
    "checkpoints_root",
    "fsync_tree",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "numbered_checkpoints",
    "publish",
]

logger = library_logger(__name__)


def is_complete_checkpoint(folder: PathLike) -> bool:
    """Whether ``folder`` holds a checkpoint that accel finished writing (it has the marker).

    Example:
        >>> is_complete_checkpoint("does/not/exist")
        False
    """
    return os.path.isfile(os.path.join(os.fspath(folder), COMPLETE_MARKER))


def numbered_checkpoints(root: str) -> list[tuple[int, str]]:
    """The ``checkpoint_<n>`` folders under ``root`` (complete or not), sorted by ``n``.

    Example:
        >>> numbered_checkpoints("does/not/exist")
        []
    """
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = CHECKPOINT_RE.match(name)
        path = os.path.join(root, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: PathLike) -> str | None:
    """The newest complete ``checkpoint_<n>`` folder under ``root``, or ``None``.

    Folders without the completion marker (a save that crashed, or a folder written by
    another tool) and hidden ``.partial`` folders are skipped.

    Example:
        >>> latest_checkpoint("runs/exp1/checkpoints")  # doctest: +SKIP
        'runs/exp1/checkpoints/checkpoint_7'
    """
    complete = [p for _, p in numbered_checkpoints(os.fspath(root)) if is_complete_checkpoint(p)]
    return complete[-1] if complete else None


def fsync_path(path: str) -> None:
    """Flush a file or folder to disk (quietly skipped where the filesystem cannot).

    Example:
        >>> fsync_path(".")
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync directories
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: str) -> None:
    """Flush every file and folder under ``folder`` to disk.

    Example:
        >>> fsync_tree("ckpt/.checkpoint_0.partial")  # doctest: +SKIP
    """
    for parent, _, files in os.walk(folder):
        for name in files:
            fsync_path(os.path.join(parent, name))
        fsync_path(parent)


def prune(root: str, total_limit: int, keep: str) -> None:
    """Delete the oldest complete checkpoints under ``root`` beyond ``total_limit``, never
    ``keep``; finishes deletions a crash interrupted.

    Example:
        >>> prune("runs/exp1/checkpoints", 2, keep="runs/exp1/checkpoints/checkpoint_7")  # doctest: +SKIP
    """
    complete = [p for _, p in numbered_checkpoints(root) if is_complete_checkpoint(p)]
    excess = len(complete) - total_limit
    for path in complete[: max(excess, 0)]:
        if os.path.abspath(path) == os.path.abspath(keep):
            continue
        logger.info("total_limit=%d: deleting the old checkpoint %s", total_limit, path)
        # Renamed out of sight first (atomic), so a crash mid-delete leaves a hidden folder
        # that the next prune finishes, never a half-deleted checkpoint_<n>.
        doomed = os.path.join(root, f".{os.path.basename(path)}{DELETING_SUFFIX}")
        shutil.rmtree(doomed, ignore_errors=True)
        os.rename(path, doomed)
    for name in os.listdir(root):
        if name.startswith(".") and name.endswith(DELETING_SUFFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def checkpoints_root(project_dir: PathLike | None) -> str:
    """Where ``automatic_checkpoint_naming`` puts ``checkpoint_<n>`` folders.

    Example:
        >>> checkpoints_root("runs/exp1")
        'runs/exp1/checkpoints'
    """
    if project_dir is None:
        raise ValueError(
            "ProjectConfiguration(automatic_checkpoint_naming=True) needs a project_dir: pass "
            "Accelerator(project_dir=...) or ProjectConfiguration(project_dir=...)"
        )
    return os.path.join(os.fspath(project_dir), "checkpoints")


def publish(partial: str, final: str, marker: dict[str, Any], config: Any) -> None:
    """Mark ``partial`` complete and rename it to ``final`` (main process, after every rank
    flushed its files); then prune to ``config.total_limit``.

    Example:
        >>> publish("ckpt/.c.partial", "ckpt/c", {"format": "accel-checkpoint"}, config)  # doctest: +SKIP
    """
    parent, name = os.path.split(final)
    marker_path = os.path.join(partial, COMPLETE_MARKER)
    with open(marker_path, "w") as handle:
        json.dump(marker, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(partial)
    old = os.path.join(parent, f".{name}.old")
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(partial, final)
    fsync_path(parent)
    shutil.rmtree(old, ignore_errors=True)
    if config.automatic_checkpoint_naming and config.total_limit is not None:
        prune(parent, config.total_limit, keep=final)
