"""Atomic file writes: a file is either its old self or complete, never half-written.

Each writer goes to a temporary file in the target's folder (same file system, so the final
rename is atomic), which is flushed to disk (``fsync``) and then renamed over the target with
``os.replace``; on any error the temporary file is removed and the target is left untouched.
The finished file has mode ``0o644`` (``mkstemp`` alone would leave ``0o600``). Torch-free: the
launcher writes its config file with it.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_open(path, "w") as handle:
    ...     _ = handle.write("hello")
    >>> open(path).read()
    'hello'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["FILE_MODE", "atomic_open", "atomic_path"]

#: Mode of every file written here: owner read/write, everyone else read.
FILE_MODE = 0o644

_MODES = ("w", "wb")


def _prepare(path: str | os.PathLike[str]) -> str:
    """The absolute target path, its folder created; a directory target is refused."""
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write to {target!r}: it is a directory, give a file path")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    return target


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); a platform without directory fds skips it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finish(tmp: str, target: str, fsync: bool) -> None:
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, target)
    if fsync:
        _fsync_folder(os.path.dirname(target))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write by name; it replaces ``path`` on success.

    For writers that take a file name (``torch.save``, ``safetensors.torch.save_file``). The
    parent folder is created if needed; a ``path`` that is a directory raises
    ``IsADirectoryError``. ``fsync=False`` skips flushing to disk (scratch files that need
    atomicity but not durability).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "sub", "data.bin")
        >>> with atomic_path(path) as tmp:
        ...     with open(tmp, "wb") as handle:
        ...         _ = handle.write(b"abc")
        >>> open(path, "rb").read(), oct(os.stat(path).st_mode & 0o777)
        (b'abc', '0o644')
    """
    target = _prepare(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target)
    )
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
        _finish(tmp, target, fsync)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` when the block
    ends without an error (``mode`` ``"wb"`` or ``"w"``; text mode defaults to UTF-8).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "config.json")
        >>> with atomic_open(path, "w") as handle:
        ...     _ = handle.write("{}")
        >>> try:
        ...     with atomic_open(path, "w") as handle:
        ...         _ = handle.write("half")
        ...         raise RuntimeError("interrupted")
        ... except RuntimeError:
        ...     pass
        >>> open(path).read(), os.listdir(os.path.dirname(path))
        ('{}', ['config.json'])
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_open mode={mode!r} is not a write mode; use one of {_MODES}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    target = _prepare(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target)
    )
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        _finish(tmp, target, fsync)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
