"""A torch-free spawner for the processes of one machine.

``torchrun`` imports torch in the launcher (about 5 s here) before any worker starts. This
module starts the workers with :class:`subprocess.Popen` right away, giving each the variables
torchrun would (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``,
``TORCHELASTIC_*``...), so the workers' own ``import torch`` starts at once. The workers meet
through ``init_process_group``'s ``env://`` rendezvous: rank 0 hosts the TCP store.

What it guarantees:

- each worker runs in its own process group; when one fails, the others get ``SIGTERM`` and,
  after a grace period, ``SIGKILL`` (whole groups, so their children go too). The same happens
  when the launcher gets ``SIGINT``/``SIGTERM``/``SIGHUP``; on Linux a worker also dies with
  the launcher if the launcher is killed outright (``PR_SET_PDEATHSIG``);
- each worker's stderr is passed through to the terminal while its last lines are kept, and
  a failure ends with a summary naming the rank, its exit code or signal and those lines;
- ``max_restarts`` restarts the whole group that many times after a failure;
- ``output`` (:class:`~accel.launch.worker_output.OutputPlan`) sends each rank's streams to
  its own log files and/or prefixes every console line with ``[rank N]``.

Example:
    >>> spec = WorkerGroup([sys.executable, "-c", "pass"], dict(os.environ), nproc=2)
    >>> run_workers(spec)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from subprocess import PIPE, Popen
from typing import BinaryIO, TextIO, cast

from accel.launch.worker_output import LinePrinter, OutputPlan, open_log, pump

PREFIX = "accel launch:"
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def free_port(host: str = "") -> int:
    """A TCP port nothing listens on right now (the OS picks it).

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "") -> bool:
    """Whether binding TCP ``port`` fails because something already holds it.

    Example:
        >>> with socket.socket() as s:
        ...     s.bind(("", 0)); s.listen(); port_in_use(s.getsockname()[1])
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def describe_exit(code: int) -> str:
    """Human words for a ``Popen.returncode`` (negative: killed by that signal).

    Example:
        >>> describe_exit(3), describe_exit(-9)
        ('exit code 3', 'signal SIGKILL')
    """
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def shell_exit_code(code: int) -> int:
    """The exit status a shell would show for ``code`` (``128 + n`` for signal ``n``).

    Example:
        >>> shell_exit_code(-15), shell_exit_code(2)
        (143, 2)
    """
    return 128 - code if code < 0 else code


@dataclass
class WorkerGroup:
    """What to start on this machine and how to supervise it.

    ``command`` is the full argv of one worker; ``env`` the environment every worker starts
    from (the launcher adds the per-rank variables). ``node_rank``/``nnodes`` place this
    machine in a multi-machine job with ``nproc`` workers on each. ``master_port=None`` or
    ``0`` picks a free port for each attempt.

    Example:
        >>> WorkerGroup(["python", "train.py"], {}, nproc=2).world_size
        2
    """

    command: Sequence[str]
    env: Mapping[str, str]
    nproc: int
    node_rank: int = 0
    nnodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    max_restarts: int = 0
    monitor_interval: float = 0.1
    grace_period: float = 3.0
    tail_lines: int = 20
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    distributed: bool = True
    output: OutputPlan = field(default_factory=OutputPlan)

    @property
    def world_size(self) -> int:
        """Processes over all machines."""
        return self.nproc * self.nnodes


def worker_env(group: WorkerGroup, local_rank: int, port: int, restart: int) -> dict[str, str]:
    """The environment of local worker ``local_rank``, with the variables torchrun sets.

    Example:
        >>> env = worker_env(WorkerGroup(["x"], {}, nproc=2), 1, 29500, 0)
        >>> env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]
        ('1', '2', '29500')
    """
    env = dict(group.env)
    if not group.distributed:
        return env
    rank = group.node_rank * group.nproc + local_rank
    env.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(group.world_size),
            "LOCAL_WORLD_SIZE": str(group.nproc),
            "GROUP_RANK": str(group.node_rank),
            "GROUP_WORLD_SIZE": str(group.nnodes),
            "ROLE_RANK": str(rank),
            "ROLE_WORLD_SIZE": str(group.world_size),
            "ROLE_NAME": "default",
            "MASTER_ADDR": group.master_addr,
            "MASTER_PORT": str(port),
            "TORCHELASTIC_RUN_ID": group.run_id,
            "TORCHELASTIC_RESTART_COUNT": str(restart),
            "TORCHELASTIC_MAX_RESTARTS": str(group.max_restarts),
            # No agent hosts a store here: rank 0 creates it (torch reads this in env://).
            "TORCHELASTIC_USE_AGENT_STORE": "False",
        }
    )
    env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    return env


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the launcher dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the launcher died between fork and prctl
            os._exit(1)

    return preexec


@dataclass
class Worker:
    """One started worker: its process, the threads copying its output, its log files, its
    stderr tail and when it ended."""

    local_rank: int
    rank: int
    process: Popen
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    readers: list = field(default_factory=list)  # one thread per piped stream
    logs: list = field(default_factory=list)  # open log files (None: that stream has none)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    stopped_by_launcher: bool = False


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _forward_signals(events: queue.SimpleQueue) -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP of the launcher into events (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in _HANDLED_SIGNALS:
        previous[signum] = signal.signal(signum, lambda s, _f: events.put(("signal", s, 0)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _bytes_of(stream: TextIO) -> BinaryIO:
    # a console's byte stream; a replaced sys.stdout without one is written to as it is
    return cast(BinaryIO, getattr(stream, "buffer", stream))


def _start(group: WorkerGroup, port: int, restart: int, events: queue.SimpleQueue) -> list[Worker]:
    workers = []
    plan = group.output
    consoles = {
        "stdout": LinePrinter(_bytes_of(sys.stdout)),
        "stderr": LinePrinter(_bytes_of(sys.stderr)),
    }
    preexec = _die_with_parent(os.getpid())
    for local_rank in range(group.nproc):
        rank = group.node_rank * group.nproc + local_rank
        process = Popen(
            list(group.command),
            env=worker_env(group, local_rank, port, restart),
            stdout=PIPE if plan.capture_stdout else None,
            stderr=PIPE,
            start_new_session=True,
            preexec_fn=preexec,
        )
        worker = Worker(local_rank, rank, process)
        worker.tail = collections.deque(maxlen=group.tail_lines)
        prefix = f"[rank {rank}] ".encode() if plan.rank_prefix else b""
        for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
            if stream is None:
                continue
            log = open_log(plan, rank, name, restart)
            worker.logs.append(log)
            console = consoles[name] if plan.to_console(name) else None
            tail = worker.tail if name == "stderr" else None
            reader = threading.Thread(
                target=pump, args=(stream, console, log, tail, prefix), daemon=True
            )
            reader.start()
            worker.readers.append(reader)
        threading.Thread(
            target=lambda w=worker: events.put(("exit", w.local_rank, w.process.wait())),
            daemon=True,
        ).start()
        workers.append(worker)
    return workers


def _signal_groups(workers: Sequence[Worker], signum: int) -> None:
    for worker in workers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.process.pid, signum)


def stop_workers(workers: Sequence[Worker], grace_period: float) -> None:
    """SIGTERM every worker's process group, SIGKILL what is left after ``grace_period`` s.

    Example:
        >>> stop_workers([], 1.0)
    """
    alive = [w for w in workers if w.process.poll() is None]
    for worker in alive:
        worker.stopped_by_launcher = True
    _signal_groups(alive, signal.SIGTERM)
    deadline = time.monotonic() + grace_period
    for worker in alive:
        with contextlib.suppress(Exception):
            worker.process.wait(timeout=max(deadline - time.monotonic(), 0))
    # Everything still in the workers' groups (stragglers, their children) goes now.
    _signal_groups(workers, signal.SIGKILL)
    for worker in workers:
        worker.process.wait()
        for reader in worker.readers:
            reader.join(timeout=1.0)
        for log in worker.logs:
            if log is not None:
                log.close()


def _summary(failed: Worker, workers: Sequence[Worker], final: bool) -> str:
    code = failed.process.returncode
    lines = [
        f"{PREFIX} rank {failed.rank} (local rank {failed.local_rank}, pid {failed.process.pid}) "
        f"failed with {describe_exit(code)} after {(failed.ended or time.monotonic()) - failed.started:.1f}s"
    ]
    if failed.tail:
        lines.append(f"  last {len(failed.tail)} lines of rank {failed.rank}'s stderr:")
        lines.extend("    | " + raw.decode("utf-8", "replace").rstrip("\n") for raw in failed.tail)
    else:
        lines.append(f"  rank {failed.rank} wrote nothing to stderr")
    logs = [str(log.name) for log in failed.logs if log is not None]
    if logs:
        lines.append(f"  full output of rank {failed.rank}: {', '.join(logs)}")
    others = []
    for worker in workers:
        if worker is failed:
            continue
        if worker.stopped_by_launcher and worker.process.returncode < 0:
            how = describe_exit(worker.process.returncode)
            others.append(f"rank {worker.rank} stopped by the launcher ({how})")
        else:
            others.append(f"rank {worker.rank} {describe_exit(worker.process.returncode)}")
    if others:
        lines.append("  other ranks: " + "; ".join(others))
    if final:
        lines.append(f"{PREFIX} job failed")
    return "\n".join(lines)


def _run_once(group: WorkerGroup, port: int, restart: int) -> tuple[int, Worker | None, list]:
    """Start the group, wait for it; return (exit code, failed worker, workers)."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    with _forward_signals(events):
        workers = _start(group, port, restart, events)
        remaining = len(workers)
        try:
            while remaining:
                try:
                    kind, value, code = events.get(timeout=max(group.monitor_interval, 0.05))
                except queue.Empty:
                    continue
                if kind == "signal":
                    raise _Interrupted(value)
                worker = workers[value]
                worker.ended = time.monotonic()
                remaining -= 1
                if code != 0:
                    stop_workers(workers, group.grace_period)
                    return shell_exit_code(code), worker, workers
        except BaseException:
            stop_workers(workers, group.grace_period)
            raise
    stop_workers(workers, 0.0)  # sweeps leftovers of finished workers' process groups
    return 0, None, workers


def run_workers(group: WorkerGroup, log: Callable[[str], None] | None = None) -> int:
    """Run ``group`` to completion (restarting it up to ``max_restarts`` times); its exit code.

    0 when every worker exits 0; otherwise the failed worker's exit status (``128 + n`` for
    signal ``n``), after a summary on stderr. SIGINT/SIGTERM of the launcher stop every worker
    and return ``128 + signal``.

    Example:
        >>> run_workers(WorkerGroup([sys.executable, "-c", "pass"], dict(os.environ), 2))  # doctest: +SKIP
        0
    """
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    for restart in range(group.max_restarts + 1):
        port = group.master_port or free_port()
        try:
            code, failed, workers = _run_once(group, port, restart)
        except _Interrupted as stop:
            name = signal.Signals(stop.signum).name
            log(f"{PREFIX} got {name}; stopped all {group.nproc} workers")
            return 128 + stop.signum
        if failed is None:
            return 0
        final = restart == group.max_restarts
        log(_summary(failed, workers, final))
        if final:
            return code
        log(
            f"{PREFIX} restarting all {group.nproc} workers "
            f"(restart {restart + 1} of {group.max_restarts})"
        )
    return 1  # unreachable: the loop returns


def exec_single(command: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace the launcher by ``command`` (one process: no rendezvous, nothing to supervise).

    Example:
        >>> exec_single([sys.executable, "train.py"], os.environ)  # doctest: +SKIP
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], list(command), dict(env))
