"""Where a launched worker's stdout and stderr go: the console, a per-rank log file, or both.

``accel launch`` reads each worker's streams through pipes. Whatever it copies to the
console is written whole-segment at a time under one lock, so the output of two ranks never
shares a line; with ``rank_prefix`` every line starts with ``[rank N] `` and only complete
lines are printed (a progress bar's ``\\r`` redraws collapse into its last state). With
``log_dir`` each rank's streams also go, unchanged, to ``rank_<N>.stdout.log`` and
``rank_<N>.stderr.log`` in that folder; ``tee`` picks which streams still reach the console
(torchrun's numbers: 0 none, 1 stdout, 2 stderr, 3 both).

Example:
    >>> plan = OutputPlan(log_dir="logs", tee=2, rank_prefix=True)
    >>> plan.capture_stdout, plan.to_console("stdout"), plan.to_console("stderr")
    (True, False, True)
    >>> str(plan.log_path(1, "stderr"))
    'logs/rank_1.stderr.log'
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from accel.state.option_parsers import TEE

_STREAM_BITS = {"stdout": 1, "stderr": 2}


def parse_tee(value: object, where: str) -> int:
    """torchrun's ``--tee`` value (0 none, 1 stdout, 2 stderr, 3 both) from a flag, env or config.

    ``True`` means 3 and ``False`` 0, so a config file may say ``tee: true``; the option
    table's parser (:data:`accel.state.option_parsers.TEE`).

    Example:
        >>> parse_tee("3", "--tee"), parse_tee(True, "config key tee")
        (3, 3)
    """
    return TEE(value, where)


@dataclass(frozen=True)
class OutputPlan:
    """How the launcher routes the workers' output (the default: straight to the console).

    Example:
        >>> OutputPlan().capture_stdout
        False
    """

    log_dir: str | None = None
    tee: int = 0
    rank_prefix: bool = False

    @property
    def capture_stdout(self) -> bool:
        """Whether stdout must go through the launcher (else the worker inherits it)."""
        return self.log_dir is not None or self.rank_prefix

    def to_console(self, stream: str) -> bool:
        """Whether ``stream`` ("stdout"/"stderr") is printed on the launcher's console.

        Example:
            >>> OutputPlan(log_dir="d", tee=1).to_console("stderr")
            False
        """
        return self.log_dir is None or bool(self.tee & _STREAM_BITS[stream])

    def log_path(self, rank: int, stream: str) -> Path:
        """The log file of ``stream`` of global rank ``rank`` (needs ``log_dir``).

        Example:
            >>> OutputPlan(log_dir="/tmp/run").log_path(0, "stdout").name
            'rank_0.stdout.log'
        """
        if self.log_dir is None:
            raise ValueError("OutputPlan.log_path needs log_dir")
        return Path(self.log_dir) / f"rank_{rank}.{stream}.log"


class LinePrinter:
    """Writes segments of several workers to one binary console without mixing lines.

    Example:
        >>> import io
        >>> out = io.BytesIO()
        >>> LinePrinter(out).write(b"hi\\n", prefix=b"[rank 0] ")
        >>> out.getvalue()
        b'[rank 0] hi\\n'
    """

    lock = threading.Lock()  # one for all printers: stdout and stderr may be one terminal

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink

    def write(self, data: bytes, prefix: bytes = b"") -> None:
        """Write ``data`` (whole lines or ``\\r`` segments) in one go, each line prefixed."""
        if prefix:
            data = b"".join(prefix + line for line in _lines(data))
        with self.lock:
            try:
                self.sink.write(data)
                self.sink.flush()
            except (OSError, ValueError):
                pass


def _lines(data: bytes) -> list[bytes]:
    """``data`` cut after each ``\\n`` (``bytes.splitlines`` would also cut at ``\\r``)."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def _split_complete(buffer: bytes, ends: bytes) -> tuple[bytes, bytes]:
    """(the part of ``buffer`` up to its last byte in ``ends``, the rest)."""
    cut = max(buffer.rfind(end) for end in (ends[i : i + 1] for i in range(len(ends))))
    return buffer[: cut + 1], buffer[cut + 1 :]


def _collapse_redraws(lines: bytes) -> bytes:
    """Keep of each line what a terminal would show last (text after its last ``\\r``)."""
    out = []
    for line in _lines(lines):
        body = line.rstrip(b"\r\n")
        end = line[len(body) :]
        out.append(body.rsplit(b"\r", 1)[-1] + (b"\n" if end else b""))
    return b"".join(out)


def pump(
    stream: BinaryIO,
    console: LinePrinter | None,
    log_file: BinaryIO | None,
    tail: collections.deque | None = None,
    prefix: bytes = b"",
) -> None:
    """Copy ``stream`` until it closes: raw to ``log_file``; whole lines (and, without a
    prefix, ``\\r`` redraws) to ``console``; the last lines into ``tail``.

    Example:
        >>> import io
        >>> out, log = io.BytesIO(), io.BytesIO()
        >>> pump(io.BytesIO(b"a\\nb"), LinePrinter(out), log, prefix=b"[rank 1] ")
        >>> out.getvalue(), log.getvalue()
        (b'[rank 1] a\\n[rank 1] b\\n', b'a\\nb')
    """
    ends = b"\n" if prefix else b"\n\r"
    pending = b""
    line = b""  # the tail's unfinished line
    fd = stream.fileno() if hasattr(stream, "fileno") and _has_fd(stream) else None
    while True:
        chunk = os.read(fd, 65536) if fd is not None else stream.read(65536)
        if not chunk:
            break
        if log_file is not None:
            try:
                log_file.write(chunk)
            except (OSError, ValueError):
                log_file = None
        if tail is not None:
            parts = (line + chunk).split(b"\n")
            tail.extend(part + b"\n" for part in parts[:-1])
            line = parts[-1]
        if console is not None:
            complete, pending = _split_complete(pending + chunk, ends)
            if complete:
                console.write(_collapse_redraws(complete) if prefix else complete, prefix)
    if console is not None and pending:
        console.write((_collapse_redraws(pending) if prefix else pending) + b"\n", prefix)
    if tail is not None and line:
        tail.append(line + b"\n")
    stream.close()


def _has_fd(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def open_log(plan: OutputPlan, rank: int, stream: str, restart: int) -> BinaryIO | None:
    """The unbuffered log file of ``stream`` for ``rank`` (appended to on restarts), or None.

    Example:
        >>> open_log(OutputPlan(), 0, "stdout", 0) is None
        True
    """
    if plan.log_dir is None:
        return None
    path = plan.log_path(rank, stream)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab" if restart else "wb", buffering=0)
