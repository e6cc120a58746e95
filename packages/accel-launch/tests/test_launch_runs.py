"""Real launches of the ``accel`` console script with tiny scripts.

Scripts that need torch cost ~5 s per process to import, so only the tests that need a real
process group import it (marked ``slow``); the others use torch-free scripts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from accel.launch.spawn import free_port

ACCEL = Path(sys.executable).parent / "accel"
NOISE = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

ALL_REDUCE = """
import json, os, sys
import torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
report = {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": t.item(),
          "local_rank": os.environ["LOCAL_RANK"], "omp": os.environ["OMP_NUM_THREADS"],
          "mp": os.environ["ACCEL_MIXED_PRECISION"], "cpu": os.environ["ACCEL_USE_CPU"],
          "argv": sys.argv[1:]}
os.write(1, ("REPORT " + json.dumps(report) + "\\n").encode())  # one write: no interleaving
dist.destroy_process_group()
"""

SHOW_ENV = """
import json, os, sys
keys = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCEL_MIXED_PRECISION", "OMP_NUM_THREADS",
        "TORCHELASTIC_RESTART_COUNT", "ACCEL_USE_CPU"]
report = {**{k: os.environ.get(k) for k in keys}, "pid": os.getpid(), "argv": sys.argv[1:]}
os.write(1, ("REPORT " + json.dumps(report) + "\\n").encode())  # one write: no interleaving
"""


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in NOISE and not k.startswith(("ACCEL_", "ACCELERATE_", "SLURM_", "FSDP_"))
    }
    env.update(HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "xdg"), HF_HOME=str(tmp / "hf"))
    env.pop("OMP_NUM_THREADS", None)
    env.update(extra)
    return env


def start(args: list[str], tmp: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(ACCEL), "launch", *args],
        cwd=tmp,
        env=env or clean_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"launch timed out\n{out}\n{err}") from None
    return process.returncode, out, err


def launch(args: list[str], tmp: Path, env: dict[str, str] | None = None, timeout: float = 120):
    return finish(start(args, tmp, env), timeout)


def reports(out: str) -> list[dict]:
    found = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("REPORT ")]
    return sorted(found, key=lambda r: int(r.get("rank") or r.get("RANK") or 0))


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------- process groups


@pytest.mark.slow
def test_four_cpu_processes_form_one_gloo_group(tmp_path):
    """One gloo launch checks what each process sees (a torch import costs ~3 CPU-s per
    process, so the facts of the former two- and four-process launches share this one; the
    default OMP_NUM_THREADS=1 is checked by the torch-free launches below)."""
    write(tmp_path, "job.py", ALL_REDUCE)
    code, out, err = launch(
        ["--cpu", "--num-processes", "4", "--num_cpu_threads_per_process", "2",
         "--mixed_precision", "bf16", "job.py", "--lr", "1"],
        tmp_path,
    )  # fmt: skip
    assert code == 0, err
    got = reports(out)
    assert [r["rank"] for r in got] == [0, 1, 2, 3]
    assert all(r["world"] == 4 and r["sum"] == 10.0 for r in got)
    assert [r["local_rank"] for r in got] == ["0", "1", "2", "3"]
    assert all(r["omp"] == "2" and r["mp"] == "bf16" and r["cpu"] == "true" for r in got)
    assert all(r["argv"] == ["--lr", "1"] for r in got)


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [
        (["--multi_gpu"], {"ACCELERATE_USE_CPU": "1"}),  # how Accelerate users start CPU jobs
        (["--cpu", "--multi_gpu"], {}),
        (["--use_cpu", "--multi_gpu"], {}),
    ],
)
def test_cpu_with_multi_gpu_starts_n_cpu_processes(tmp_path, args, extra_env):
    write(tmp_path, "job.py", SHOW_ENV)
    env = clean_env(tmp_path, **extra_env)
    code, out, err = launch([*args, "--num_processes", "2", "job.py"], tmp_path, env)
    assert code == 0, err
    got = reports(out)
    assert [r["RANK"] for r in got] == ["0", "1"]
    assert all(r["WORLD_SIZE"] == "2" and r["ACCEL_USE_CPU"] == "true" for r in got)
    assert [r["LOCAL_RANK"] for r in got] == ["0", "1"]
    assert all(r["OMP_NUM_THREADS"] == "1" for r in got)  # the default: one thread each


def test_single_process_replaces_the_launcher(tmp_path):
    write(tmp_path, "job.py", SHOW_ENV)
    process = start(["--num_processes", "1", "--cpu", "job.py", "a"], tmp_path)
    code, out, err = finish(process)
    assert code == 0, err
    (report,) = reports(out)
    assert report["pid"] == process.pid  # exec'd: no supervisor, no rendezvous
    assert report["RANK"] is None and report["ACCEL_USE_CPU"] == "true"
    assert report["argv"] == ["a"]


def test_module_flag_runs_a_module(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, "job.py", SHOW_ENV)
    code, out, err = launch(["--cpu", "--num_processes", "2", "-m", "pkg.job", "x"], tmp_path)
    assert code == 0, err
    got = reports(out)
    assert [(r["RANK"], r["WORLD_SIZE"]) for r in got] == [("0", "2"), ("1", "2")]
    assert all(r["argv"] == ["x"] for r in got)


def test_no_python_runs_an_executable(tmp_path):
    code, out, err = launch(
        ["--cpu", "--num_processes", "2", "--no_python", "sh", "-c", "echo rank=$RANK/$WORLD_SIZE"],
        tmp_path,
    )
    assert code == 0, err
    assert sorted(out.split()) == ["rank=0/2", "rank=1/2"]


# ---------------------------------------------------------------------------------- failures


@pytest.mark.slow
def test_failing_rank_stops_the_others_and_is_named(tmp_path):
    write(
        tmp_path,
        "job.py",
        """
        import os, sys, time
        import torch.distributed as dist
        dist.init_process_group("gloo")
        open(f"pid{dist.get_rank()}", "w").write(str(os.getpid()))
        if dist.get_rank() == 1:
            time.sleep(1)
            open("failed_at", "w").write(repr(time.time()))
            raise ValueError("rank one is broken")
        dist.barrier()
        time.sleep(300)
        """,
    )
    code, _, err = launch(["--cpu", "--num_processes", "2", "job.py"], tmp_path)
    ended = time.time()
    assert code == 1
    # rank 0 would sleep 300 s: ending well before that means it was stopped, not waited for
    # (a loose bound, so a loaded machine does not fail it; this is not a timing test).
    assert ended - float((tmp_path / "failed_at").read_text()) < 150
    summary = err[err.index("accel launch: rank 1") :]
    assert "failed with exit code 1" in summary
    assert "ValueError: rank one is broken" in summary  # the stderr tail
    assert "rank 0" in summary and "job failed" in summary
    assert "ValueError: rank one is broken" in err[: err.index("accel launch: rank 1")]  # tee
    for rank in (0, 1):
        assert not alive(int((tmp_path / f"pid{rank}").read_text()))


def test_worker_ignoring_sigterm_and_its_children_are_killed(tmp_path):
    write(
        tmp_path,
        "job.py",
        """
        import os, signal, subprocess, sys, time
        rank = int(os.environ["RANK"])
        if rank == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            open("pids", "w").write(f"{os.getpid()} {child.pid}")
            time.sleep(300)
        while not os.path.exists("pids"):
            time.sleep(0.05)
        print("rank 1 gives up", file=sys.stderr)
        sys.exit(3)
        """,
    )
    started = time.monotonic()
    code, _, err = launch(["--cpu", "--num_processes", "2", "job.py"], tmp_path)
    assert code == 3
    assert time.monotonic() - started < 15
    assert "rank 1 (local rank 1" in err and "exit code 3" in err and "rank 1 gives up" in err
    assert "rank 0 stopped by the launcher (signal SIGKILL)" in err
    for pid in map(int, (tmp_path / "pids").read_text().split()):
        assert not alive(pid)


def test_restart_after_a_failure(tmp_path):
    first = """
        import os, sys
        if os.environ["RANK"] == "1" and not os.path.exists("marker"):
            open("marker", "w").close()
            sys.exit("first attempt fails")
        """
    write(tmp_path, "job.py", textwrap.dedent(first) + SHOW_ENV)
    code, out, err = launch(
        ["--cpu", "--num_processes", "2", "--max_restarts", "1", "job.py"], tmp_path
    )
    assert code == 0, err
    assert "first attempt fails" in err and "restart 1 of 1" in err
    assert {r["TORCHELASTIC_RESTART_COUNT"] for r in reports(out) if r["RANK"] == "1"} == {"1"}


def test_sigint_stops_every_worker(tmp_path):
    write(
        tmp_path,
        "job.py",
        """
        import os, time
        open(f"pid{os.environ['RANK']}", "w").write(str(os.getpid()))
        time.sleep(300)
        """,
    )
    process = start(["--cpu", "--num_processes", "2", "job.py"], tmp_path)
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"pid{r}").exists() for r in (0, 1)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process, timeout=20)
    assert code == 130 and "SIGINT" in err
    for rank in (0, 1):
        assert not alive(int((tmp_path / f"pid{rank}").read_text()))


# ---------------------------------------------------------------------- settings and bad input


def test_config_file_environment_and_flag_precedence(tmp_path):
    write(tmp_path, "job.py", SHOW_ENV)
    (tmp_path / "cfg.yaml").write_text("distributed_type: 'NO'\nmixed_precision: fp16\n")
    base = ["--config_file", "cfg.yaml", "--num_processes", "1", "job.py"]
    code, out, err = launch(base, tmp_path)
    assert code == 0, err
    assert reports(out)[0]["ACCEL_MIXED_PRECISION"] == "fp16"
    assert "cfg.yaml" in err and "mixed_precision=fp16" in err
    env = clean_env(tmp_path, ACCELERATE_MIXED_PRECISION="bf16")
    code, out, err = launch(base, tmp_path, env)
    assert reports(out)[0]["ACCEL_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_MIXED_PRECISION" in err
    code, out, err = launch(["--mixed_precision", "no", "--quiet", *base], tmp_path, env)
    assert reports(out)[0]["ACCEL_MIXED_PRECISION"] == "no"
    assert err == ""


BAD_INPUT = [
    (["missing.py"], "script 'missing.py' does not exist"),
    (["--cpu", "--gpu_ids", "0", "job.py"], "--cpu (from flag --cpu) conflicts with --gpu_ids=0"),
    (["--num_processes", "0", "job.py"], "--num_processes=0 must be at least 1"),
    (["--num_processes", "two", "job.py"], "invalid int value: 'two'"),
    (["--mixed_precision", "fp17", "job.py"], "invalid choice: 'fp17'"),
    (["-m", "--no_python", "job.py"], "--module and --no_python cannot be used together"),
    (["--no_python", "./job.py"], "'./job.py' exists but is not executable"),
    (["--no_python", "missing_tool"], "executable 'missing_tool' not found"),
    (["--multi_gpu", "--use_fsdp", "--num_processes", "2", "job.py"], "cannot be used together"),
    (["--cpu", "--tpu", "job.py"], "--cpu (from flag --cpu) and --tpu (from flag --tpu) cannot be used together"),
    (["--num_machines", "2", "--machine_rank", "2", "--main_process_ip", "h", "--num_processes", "2", "job.py"], "machine_rank=2"),
    (["--num_machines", "2", "--num_processes", "3", "--main_process_ip", "h", "job.py"], "not a multiple"),
    (["--config_file", "nope.yaml", "job.py"], "nope.yaml does not exist"),
    (["--use_fsdp", "--fsdp_version", "1", "job.py"], "FSDP2 only"),
    (["--num_procesess", "2", "job.py"], "did you mean '--num_processes'"),
]  # fmt: skip


def launch_in_process(args: list[str], tmp: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``accel launch *args`` through the CLI's ``main`` in this process, with the cwd and
    environment :func:`launch` gives the console script; starting any job fails the test."""
    from accel.launch import cli, elastic, spawn

    def refuse(*_args, **_kwargs):
        raise AssertionError(f"accel launch {args} started a job")

    for module, name in ((spawn, "exec_single"), (spawn, "run_workers"), (elastic, "run_elastic")):
        monkeypatch.setattr(module, name, refuse)
    env = clean_env(tmp)
    for key in set(os.environ) - set(env):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp)
    capsys.readouterr()
    code = cli.main(["launch", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, needle):
    """Each message, in process (a fresh interpreter adds nothing to what ``main`` prints and
    returns); the test below runs the console script for the wiring."""
    write(tmp_path, "job.py", "raise SystemExit('must not run')")
    code, err = launch_in_process(args, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("args", "needle"), [BAD_INPUT[0], BAD_INPUT[-1]])
def test_bad_input_from_the_console_script(tmp_path, args, needle):
    """The real ``accel`` script: a settings error and a parser error, one line and exit 2."""
    write(tmp_path, "job.py", "raise SystemExit('must not run')")
    code, _, err = launch(args, tmp_path)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_busy_port_is_refused(tmp_path):
    write(tmp_path, "job.py", "raise SystemExit('must not run')")
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        code, _, err = launch(
            ["--cpu", "--num_processes", "2", "--main_process_port", port, "job.py"], tmp_path
        )
    assert code == 2 and f"main_process_port {port} is already in use" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------ multi-machine, SLURM


def _two_machines(
    tmp_path: Path, envs: list[dict[str, str]], extra: list[str], ranked: bool = False
) -> list[dict]:
    """Start one launcher per entry of ``envs`` (machine rank = index if ``ranked``)."""
    write(tmp_path, "job.py", ALL_REDUCE)
    processes = [
        start([*extra, *(["--machine_rank", str(i)] if ranked else []), "job.py"], tmp_path, env)
        for i, env in enumerate(envs)
    ]
    results = [finish(process, timeout=150) for process in processes]
    for code, _, err in results:
        assert code == 0, err
    return reports("".join(out for _, out, _ in results))


@pytest.mark.slow
def test_two_machines_on_localhost(tmp_path):
    port = str(free_port())
    common = ["--cpu", "--num_processes", "2", "--num_machines", "2"]
    common += ["--main_process_ip", "127.0.0.1", "--main_process_port", port]
    envs = [clean_env(tmp_path)] * 2
    got = _two_machines(tmp_path, envs, common, ranked=True)
    assert [(r["rank"], r["world"], r["sum"]) for r in got] == [(0, 2, 3.0), (1, 2, 3.0)]


@pytest.mark.slow
def test_slurm_allocation_is_read(tmp_path):
    slurm = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "127.0.0.[1-2]"}
    envs = [clean_env(tmp_path, **slurm, SLURM_NODEID=str(node)) for node in (0, 1)]
    extra = ["--cpu", "--num_processes", "2", "--main_process_port", str(free_port())]
    got = _two_machines(tmp_path, envs, extra)
    assert [(r["rank"], r["world"], r["sum"]) for r in got] == [(0, 2, 3.0), (1, 2, 3.0)]


# ---------------------------------------------------------------------------- debug_launcher


def _debug_job(out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    Path(out_dir, f"rank{dist.get_rank()}").write_text(f"{dist.get_world_size()} {value.item()}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_debug_launcher_runs_two_gloo_processes(tmp_path):
    from accel.launch.notebook import debug_launcher

    debug_launcher(_debug_job, args=(str(tmp_path),))
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["2 3.0", "2 3.0"]


@pytest.mark.slow
def test_rank_stuck_in_a_collective_is_reported_after_the_group_timeout(tmp_path):
    write(
        tmp_path,
        "job.py",
        """
        import os, time
        from datetime import timedelta
        from accel.state import InitProcessGroupKwargs, PartialState
        # Both ranks have imported torch before the group forms, so the short group timeout
        # is spent in the barrier below, not waiting for a slow import on a loaded machine.
        open(f"ready{os.environ['RANK']}", "w").close()
        while not (os.path.exists("ready0") and os.path.exists("ready1")):
            time.sleep(0.01)
        state = PartialState(**InitProcessGroupKwargs(timeout=timedelta(seconds=2)).to_kwargs())
        open(f"joined{state.process_index}", "w").close()
        if state.process_index == 1:
            time.sleep(300)  # never reaches the barrier
        state.wait_for_everyone()
        """,
    )
    began = time.time()
    code, _, err = launch(["--cpu", "--num_processes", "2", "job.py"], tmp_path, timeout=150)
    assert code != 0
    assert time.time() - began < 100
    assert (tmp_path / "joined0").exists() and (tmp_path / "joined1").exists()
    summary = err[err.index("accel launch: rank 0") :]
    assert "job failed" in summary
    assert "barrier" in summary.lower() or "timed out" in summary.lower()
    assert "rank 1 stopped by the launcher" in summary  # the stuck rank is named


NOTEBOOK_JOB = """
import sys
from accel.launch import notebook_launcher


def job(folder):
    import torch
    from accel.state import PartialState

    state = PartialState()
    total = torch.tensor([state.process_index + 1.0])
    torch.distributed.all_reduce(total)
    with open(f"{folder}/rank{state.process_index}", "w") as handle:
        handle.write(f"{state.num_processes} {total.item()}")


if __name__ == "__main__":
    notebook_launcher(job, args=(sys.argv[1],), num_processes=2)
"""


@pytest.mark.slow
def test_notebook_launcher_from_a_script_spawns_two_gloo_processes(tmp_path):
    script = write(tmp_path, "nb.py", NOTEBOOK_JOB)
    env = clean_env(tmp_path, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["2 3.0", "2 3.0"]
