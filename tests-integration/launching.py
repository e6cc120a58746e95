"""Start real multi-process jobs for the integration tests and collect what each rank reported.

Workers (scripts in ``workers/``) run many named checks and write one JSON file per rank into
the directory named by ``ACCEL_IT_OUT`` (see ``workers/_harness.py``). Importing torch costs
seconds here, so each worker is launched once per test session and the tests read its report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from accel.launch.spawn import free_port

WORKERS = Path(__file__).parent / "workers"
ACCEL = Path(sys.executable).parent / "accel"

# Variables of the calling environment that would change how the workers see their world.
_INHERITED_NOISE = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)
_NOISE_PREFIXES = ("ACCEL_", "ACCELERATE_", "OMPI_", "PMI_", "MV2_", "MPI_LOCAL")


# DeepSpeed's JIT-built CPU ops (cpu_adam, shm comm) are compiled against one environment's
# torch headers; environments sharing torch's default cache rebuild them in turn, minutes each.
# One cache per environment keeps a build done once.
_EXTENSIONS_DIR = str(
    Path.home()
    / ".cache"
    / "torch_extensions"
    / ("env-" + hashlib.sha1(sys.prefix.encode()).hexdigest()[:12])
)


_THREAD = threading.local()


@contextlib.contextmanager
def environment_base(environ: Mapping[str, str]):
    """In this thread, launches start from ``environ`` instead of ``os.environ``.

    Background jobs (background.py) use the environment of the session's start: tests running
    meanwhile change ``os.environ`` (monkeypatch, the root conftest's launcher-free reset).

    Example:
        >>> with environment_base({"PATH": "/bin"}):
        ...     base_environment()["PATH"]
        '/bin'
    """
    _THREAD.base = dict(environ)
    try:
        yield
    finally:
        del _THREAD.base


def base_environment() -> dict[str, str]:
    """A copy of the environment launches of this thread start from (see ``environment_base``).

    Example:
        >>> base_environment() == dict(os.environ)
        True
    """
    return dict(getattr(_THREAD, "base", os.environ))


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without launcher or accel settings, plus ``extra``.

    ``OMP_NUM_THREADS=1`` is set (torch is 10-70x slower on small ops with more threads on a
    2-core machine) and output is unbuffered so a killed job still shows what it printed.

    Example:
        >>> clean_environment({"ACCEL_DEBUG_MODE": "1"})["ACCEL_DEBUG_MODE"]
        '1'
    """
    environ = {
        key: value
        for key, value in base_environment().items()
        if key not in _INHERITED_NOISE and not key.startswith(_NOISE_PREFIXES)
    }
    environ["OMP_NUM_THREADS"] = "1"
    environ["PYTHONUNBUFFERED"] = "1"
    environ.setdefault("TORCH_EXTENSIONS_DIR", _EXTENSIONS_DIR)
    environ.update(extra or {})
    return environ


EXIT_ABORT = "terminate called without an active exception"


@dataclass
class LaunchResult:
    """What a launch produced: exit status, output, and each rank's report.

    ``reports[rank]`` is the JSON a worker wrote: ``{"checks": {name: "ok" | error text},
    "seconds": {name: float}, "values": {...}}``.

    Example:
        >>> LaunchResult("job", 0, "", "", {0: {"checks": {"a": "ok"}}}, 1.0).status("a", 0)
        'ok'
    """

    name: str
    returncode: int | None
    stdout: str
    stderr: str
    reports: dict[int, dict] = field(default_factory=dict)
    elapsed: float = 0.0
    timed_out: bool = False

    def check_names(self) -> list[str]:
        """Every check name any rank reported, in the order the workers ran them.

        Example:
            >>> LaunchResult("j", 0, "", "", {0: {"checks": {"b": "ok", "a": "ok"}}}).check_names()
            ['b', 'a']
        """
        names: dict[str, None] = {}
        for rank in sorted(self.reports):
            names.update(dict.fromkeys(self.reports[rank].get("checks", {})))
        return list(names)

    def status(self, name: str, rank: int) -> str | None:
        """The outcome rank ``rank`` recorded for check ``name`` (``None``: never reported).

        Example:
            >>> LaunchResult("j", 0, "", "", {}).status("a", 0) is None
            True
        """
        return self.reports.get(rank, {}).get("checks", {}).get(name)

    def seconds(self, name: str, rank: int) -> float | None:
        """How long rank ``rank`` spent in check ``name``.

        Example:
            >>> LaunchResult("j", 0, "", "", {0: {"seconds": {"a": 0.5}}}).seconds("a", 0)
            0.5
        """
        return self.reports.get(rank, {}).get("seconds", {}).get(name)

    def value(self, name: str, rank: int) -> object:
        """A value rank ``rank`` recorded under ``name`` (for comparisons done in pytest).

        Example:
            >>> LaunchResult("j", 0, "", "", {0: {"values": {"x": 3}}}).value("x", 0)
            3
        """
        return self.reports.get(rank, {}).get("values", {}).get(name)

    def diagnostics(self, tail: int = 3000) -> str:
        """Exit status and the end of stdout/stderr, for assertion messages.

        Example:
            >>> "exit code 0" in LaunchResult("j", 0, "out", "err").diagnostics()
            True
        """
        state = "timed out" if self.timed_out else f"exit code {self.returncode}"
        return (
            f"launch {self.name!r}: {state} after {self.elapsed:.1f}s\n"
            f"--- stdout (tail) ---\n{self.stdout[-tail:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-tail:]}"
        )

    def assert_finished(self, ranks: Sequence[int], reference: bool = False) -> None:
        """Fail unless the job exited 0 in time and every one of ``ranks`` wrote its report.

        ``reference=True`` is for runs of the real Accelerate: there, a rank aborting at exit
        after the script finished (torch's gloo worker freeing a collective while Python
        finalizes; accel waits for those workers at exit, see accel.state.teardown) counts as
        finished, since it is the reference's exit and not the behaviour compared.

        Example:
            >>> LaunchResult("j", 0, "", "", {0: {}}).assert_finished([0])
        """
        reported = sorted(self.reports) == sorted(ranks)
        aborted_at_exit = reference and self.returncode != 0 and EXIT_ABORT in self.stderr
        clean = self.returncode == 0 or aborted_at_exit
        assert not self.timed_out and clean and reported, self.diagnostics()
        if aborted_at_exit:
            print(f"{self.name}: the reference run finished, then a rank aborted at exit")

    def assert_passed(self, name: str, ranks: Sequence[int]) -> None:
        """Fail with every rank's outcome unless check ``name`` passed on all of ``ranks``.

        Example:
            >>> LaunchResult("j", 0, "", "", {0: {"checks": {"a": "ok"}}}).assert_passed("a", [0])
        """
        outcomes = {rank: self.status(name, rank) for rank in ranks}
        if all(outcome == "ok" for outcome in outcomes.values()):
            return
        lines = "\n".join(f"  rank {rank}: {outcome}" for rank, outcome in outcomes.items())
        raise AssertionError(
            f"check {name!r} did not pass everywhere:\n{lines}\n{self.diagnostics()}"
        )


def _read_reports(out_dir: Path) -> dict[int, dict]:
    reports = {}
    for path in sorted(out_dir.glob("rank*.json")):
        reports[int(path.stem.removeprefix("rank"))] = json.loads(path.read_text())
    return reports


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (read from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    """Stop ``process`` and every process below it, including workers in their own sessions.

    torchrun and ``accel launch`` start each worker in a new session, so killing the launcher's
    process group alone would leave the workers running (and holding ports and CPU) after a
    timed-out test.
    """
    below = _descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _communicate(process: subprocess.Popen, deadline: float) -> tuple[str, str, bool]:
    """Wait for ``process`` until ``deadline``; on overrun kill its whole process tree."""
    try:
        stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        return stdout, stderr, False
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        stdout, stderr = process.communicate()
        return stdout, stderr, True


def _worker_and_out_dir(script: str | Path, out_dir: Path | None) -> tuple[Path, Path]:
    """``script`` resolved against ``WORKERS``, and ``out_dir`` (a new temporary one if None)."""
    script = Path(script)
    if not script.is_absolute():
        script = WORKERS / script
    out_dir = (
        Path(tempfile.mkdtemp(prefix=f"accel-it-{script.stem}-")) if out_dir is None else out_dir
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    return script, out_dir


def _run_job(
    command: list[str], name: str, env: Mapping[str, str] | None, out_dir: Path, timeout: float
) -> LaunchResult:
    """Run ``command`` in a cleaned environment plus ``env`` and ``ACCEL_IT_OUT=out_dir``,
    killing its process tree after ``timeout`` seconds."""
    environ = clean_environment({**(env or {}), "ACCEL_IT_OUT": str(out_dir)})
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stdout, stderr, timed_out = _communicate(process, started + timeout)
    return LaunchResult(
        name=name,
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        reports=_read_reports(out_dir),
        elapsed=time.monotonic() - started,
        timed_out=timed_out,
    )


# ``python -c _SPAWN NPROC SCRIPT ARGS...``: NPROC workers ``python -u SCRIPT ARGS...`` on
# 127.0.0.1 and a free port, supervised as ``accel launch`` supervises them (torch-free).
_SPAWN = """
import os, sys
from accel.launch.spawn import WorkerGroup, run_workers
command = [sys.executable, "-u", *sys.argv[2:]]
sys.exit(run_workers(WorkerGroup(command, dict(os.environ), nproc=int(sys.argv[1]))))
"""


def run_distributed(
    script: str | Path,
    nproc: int = 2,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    args: Sequence[str] = (),
    out_dir: Path | None = None,
    launcher: Literal["spawn", "torchrun"] = "spawn",
) -> LaunchResult:
    """Run ``script`` on ``nproc`` local processes, each with the variables torchrun sets.

    ``launcher="spawn"`` (the default) starts them through ``accel.launch.spawn`` (the spawner
    behind ``accel launch``, without its ``ACCEL_*`` settings): torchrun's per-rank variables
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``,
    ``TORCHELASTIC_*``...), ``python -u``, each worker in its own session, the others stopped
    when one fails; its launcher process does not import torch (about 0.1 CPU-s instead of
    torchrun's 1.5). ``launcher="torchrun"`` runs ``python -m torch.distributed.run`` itself
    (its elastic agent hosts the rendezvous store): jobs about torchrun compatibility use it.

    The job gets a fresh free master port, a cleaned environment plus ``env``, and
    ``ACCEL_IT_OUT`` pointing at ``out_dir`` (a new temporary directory by default) where the
    workers write ``rank<N>.json``. The whole process tree is killed after ``timeout`` seconds,
    so a hung collective fails the tests instead of hanging them.

    Example:
        >>> result = run_distributed(WORKERS / "ops_checks.py")  # doctest: +SKIP
        >>> result.status("gather_tensor", 1)  # doctest: +SKIP
        'ok'
    """
    script, out_dir = _worker_and_out_dir(script, out_dir)
    if launcher == "torchrun":
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(script),
            *args,
        ]
    elif launcher == "spawn":
        command = [sys.executable, "-c", _SPAWN, str(nproc), str(script), *args]
    else:
        raise ValueError(f"launcher={launcher!r}: expected 'spawn' or 'torchrun'")
    return _run_job(command, f"{script.name} {' '.join(args)}".strip(), env, out_dir, timeout)


def accel_launch(
    script: str | Path,
    launch_args: Sequence[str] = ("--cpu", "--num_processes", "2"),
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
    out_dir: Path | None = None,
) -> LaunchResult:
    """Run ``accel launch <launch_args> script <args>`` as a user would, in a cleaned
    environment plus ``env`` and ``ACCEL_IT_OUT=out_dir``; the whole process tree is killed
    after ``timeout`` seconds.

    Example:
        >>> accel_launch("clean_exit.py", args=["ddp"]).returncode  # doctest: +SKIP
        0
    """
    script, out_dir = _worker_and_out_dir(script, out_dir)
    command = [str(ACCEL), "launch", *launch_args, str(script), *args]
    name = f"accel launch {' '.join(launch_args)} {script.name} {' '.join(args)}".strip()
    return _run_job(command, name, env, out_dir, timeout)


def run_processes(
    script: str | Path,
    envs: Sequence[Mapping[str, str]],
    timeout: float = 120.0,
    out_dir: Path | None = None,
    name: str | None = None,
) -> LaunchResult:
    """Start one plain ``python script`` per entry of ``envs`` (no torchrun) and wait for all.

    This is how an MPI launcher starts a job: each process gets only its launcher's variables
    (e.g. ``OMPI_COMM_WORLD_RANK``), not torch's ``RANK``/``WORLD_SIZE``. Every process writes
    into the same ``out_dir``; stdout and stderr of all processes are concatenated.

    Example:
        >>> envs = [{"PMI_RANK": str(r), "PMI_SIZE": "2"} for r in range(2)]
        >>> run_processes(WORKERS / "mpi_checks.py", envs)  # doctest: +SKIP
    """
    script, out_dir = _worker_and_out_dir(script, out_dir)
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env=clean_environment({**env, "ACCEL_IT_OUT": str(out_dir)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for env in envs
    ]
    outputs = [_communicate(process, started + timeout) for process in processes]
    codes = [process.returncode for process in processes]
    return LaunchResult(
        name=name or script.name,
        returncode=next((code for code in codes if code != 0), 0),
        stdout="".join(f"[process {i}]\n{out[0]}" for i, out in enumerate(outputs)),
        stderr="".join(f"[process {i}]\n{out[1]}" for i, out in enumerate(outputs)),
        reports=_read_reports(out_dir),
        elapsed=time.monotonic() - started,
        timed_out=any(out[2] for out in outputs),
    )


def declared_checks(script: str | Path) -> list[str]:
    """Names of the checks a worker script declares (functions decorated ``@checks.add`` or
    ``@step``), in file order, read without running it, so tests can be parametrized at
    collection time.

    Example:
        >>> "gather_tensor" in declared_checks("ops_checks.py")
        True
    """
    import ast

    script = Path(script)
    if not script.is_absolute():
        script = WORKERS / script
    names = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                text = ast.unparse(decorator)
                if text in ("checks.add", "step"):
                    names.append((node.lineno, node.name))
    return [name for _, name in sorted(names)]
