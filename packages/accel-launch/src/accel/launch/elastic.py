"""Multi-machine jobs through torch's elastic agent (the engine of ``torchrun``).

Used for ``--num_machines > 1`` and for ``--rdzv_backend c10d``: the agent runs the
rendezvous between machines, restarts and monitoring. It imports torch, which is why the
single-machine case uses :mod:`accel.launch.spawn` instead.

Example:
    >>> argv = torchrun_argv(TorchrunPlan(["train.py"], nproc=2, nnodes=2, node_rank=1,
    ...                      master_addr="10.0.0.1", master_port=29500))
    >>> argv[:6]
    ['--nnodes', '2', '--node_rank', '1', '--nproc_per_node', '2']
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from accel.launch.spawn import PREFIX, describe_exit


@dataclass
class TorchrunPlan:
    """What to hand to torch's elastic agent.

    ``script`` is ``[path_or_module, *args]``; ``module``/``no_python`` as in ``torchrun``.
    ``same_network`` selects the static ``--master_addr/--master_port`` rendezvous, otherwise
    ``--rdzv_endpoint ip:port`` with ``rdzv_backend``.

    Example:
        >>> TorchrunPlan(["train.py"], nproc=1).rdzv_backend
        'static'
    """

    script: Sequence[str]
    nproc: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    rdzv_backend: str = "static"
    same_network: bool = False
    max_restarts: int = 0
    monitor_interval: float = 0.1
    module: bool = False
    no_python: bool = False
    run_id: str = "none"
    log_dir: str | None = None
    tee: int = 0
    rank_prefix: bool = False


def torchrun_argv(plan: TorchrunPlan) -> list[str]:
    """The ``torchrun`` command line (without the program name) for ``plan``.

    Example:
        >>> torchrun_argv(TorchrunPlan(["-c", "pass"], nproc=2, no_python=True))[-3:]
        ['--no-python', '-c', 'pass']
    """
    argv = ["--nnodes", str(plan.nnodes), "--node_rank", str(plan.node_rank)]
    argv += ["--nproc_per_node", str(plan.nproc)]
    argv += ["--max_restarts", str(plan.max_restarts)]
    argv += ["--monitor_interval", str(plan.monitor_interval)]
    if plan.same_network or (plan.nnodes == 1 and plan.rdzv_backend == "static"):
        argv += ["--master_addr", plan.master_addr, "--master_port", str(plan.master_port)]
    else:
        argv += ["--rdzv_backend", plan.rdzv_backend, "--rdzv_id", plan.run_id]
        argv += ["--rdzv_endpoint", f"{plan.master_addr}:{plan.master_port}"]
    if plan.log_dir is not None:  # each rank's streams to files; tee: which also to the console
        argv += ["--log-dir", plan.log_dir, "--redirects", "3", "--tee", str(plan.tee)]
    elif plan.rank_prefix:  # torchrun prefixes the lines it tees with [default<rank>]:
        argv += ["--redirects", "3", "--tee", "3"]
    if plan.module:
        argv.append("--module")
    elif plan.no_python:
        argv.append("--no-python")
    return argv + list(plan.script)


def run_elastic(plan: TorchrunPlan, env: Mapping[str, str]) -> int:
    """Run ``plan`` with torch's elastic agent in this process; the job's exit status.

    ``env`` becomes the launcher's environment, which the agent passes on to the workers.

    Example:
        >>> run_elastic(TorchrunPlan(["train.py"], nproc=2), os.environ)  # doctest: +SKIP
        0
    """
    os.environ.clear()
    os.environ.update(env)
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.get_args_parser().parse_args(torchrun_argv(plan))
    try:
        torchrun.run(args)
    except ChildFailedError as error:
        lines = []
        for rank, failure in sorted(error.failures.items()):
            code = failure.exitcode
            what = describe_exit(code) if isinstance(code, int) else str(code)
            lines.append(f"{PREFIX} rank {rank} (pid {failure.pid}) failed with {what}")
            message = failure.message if isinstance(failure.message, str) else ""
            if message and not message.startswith("To enable traceback"):
                lines.extend("    | " + line for line in message.splitlines()[-20:])
        lines.append(f"{PREFIX} job failed (see the workers' stderr above)")
        print("\n".join(lines), file=sys.stderr, flush=True)
        first = min(error.failures.items())[1].exitcode
        return first if isinstance(first, int) and first > 0 else 1
    except KeyboardInterrupt:
        return 130
    return 0
