"""Start a training *function* on several processes from Python: notebooks and tests.

:func:`notebook_launcher` runs ``function(*args)`` on ``num_processes`` local processes that
form one process group (gloo on CPU, NCCL on GPUs). :func:`debug_launcher` does the same on
CPU with two processes, for tests.

How the processes start:

- in an interactive session (Jupyter/IPython, ``python -i``, a ``__main__`` without a file)
  they are **forked**, because a function defined in a notebook cell cannot be pickled;
- otherwise they are **spawned** (fresh interpreters: no state inherited), so ``function``
  must be importable (defined at module level, not a lambda or a closure).

Pitfalls (each raises a clear error before anything starts):

- CUDA initialised in the parent before forking (a cell ran ``torch.cuda.*`` or moved a tensor
  to the GPU): forked children cannot use CUDA. Restart the kernel and touch CUDA only inside
  ``function``.
- An ``Accelerator``/``AcceleratorState`` created in the parent: it would be copied into every
  child with the parent's (single-process) settings. Create it inside ``function``.
- The port is busy: pass another ``use_port`` (``"0"`` picks a free one).

Example:
    >>> def train(lr):
    ...     from accel.core import Accelerator
    ...     print(Accelerator().process_index, lr)
    >>> notebook_launcher(train, (0.1,), num_processes=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from accel.launch.spawn import free_port, port_in_use
from accel.state.env import FORK_LAUNCHED_VAR
from accel.state.environment import patch_environment
from accel.state.options import MIXED_PRECISIONS, option


def in_interactive_session() -> bool:
    """Whether this is a notebook, an IPython shell or ``python -i`` (functions from
    ``__main__`` can then only reach the workers by ``fork``).

    Example:
        >>> in_interactive_session()  # under pytest
        False
    """
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    if "IPython" in sys.modules:
        try:
            from IPython import get_ipython  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

            if get_ipython() is not None:
                return True
        except Exception:
            pass
    main = sys.modules.get("__main__")
    return main is not None and not hasattr(main, "__file__")


class _Worker:
    """What each process runs: set its rank variables, then call the user's function."""

    def __init__(self, function: Callable[..., Any], node_rank: int, nproc: int) -> None:
        self.function = function
        self.node_rank = node_rank
        self.nproc = nproc

    def __call__(self, index: int, *args: Any) -> None:
        rank = self.node_rank * self.nproc + index
        os.environ.update(
            {"LOCAL_RANK": str(index), "RANK": str(rank), "LOCAL_WORLD_SIZE": str(self.nproc)}
        )
        self.function(*args)


def _check_parent_state(start_method: str) -> None:
    from accel.state.accelerator_state import AcceleratorState

    if AcceleratorState.is_initialized():
        raise RuntimeError(
            "an Accelerator (AcceleratorState) already exists in this process; create it inside "
            "the function you pass to notebook_launcher, then restart the notebook kernel"
        )
    import torch

    if start_method == "fork" and torch.cuda.is_initialized():
        raise RuntimeError(
            "CUDA was initialised before notebook_launcher could fork the processes, and forked "
            "processes cannot use it. Restart the kernel and make sure no cell touches CUDA "
            "(torch.cuda.*, .to('cuda'), creating a model on the GPU) before calling "
            "notebook_launcher; do that inside the training function"
        )


def _start(
    worker: _Worker, args: Sequence[Any], nprocs: int, start_method: str, env: Mapping[str, str]
) -> None:
    from torch.multiprocessing.spawn import start_processes

    with patch_environment(**env):
        start_processes(
            worker, args=tuple(args), nprocs=nprocs, join=True, start_method=start_method
        )


def notebook_launcher(
    function: Callable[..., Any],
    args: Sequence[Any] = (),
    num_processes: int | None = None,
    mixed_precision: str = "no",
    use_port: str = "29500",
    master_addr: str = "127.0.0.1",
    node_rank: int = 0,
    num_nodes: int = 1,
    start_method: str | None = None,
) -> None:
    """Run ``function(*args)`` on ``num_processes`` processes (on this machine) that form one
    process group; ``num_nodes``/``node_rank`` join them with other machines.

    ``num_processes=None`` uses every GPU, or a single process (this one) without GPUs; one
    process runs ``function`` right here. ``start_method`` defaults to ``"fork"`` in an
    interactive session and ``"spawn"`` otherwise (see the module docstring for the pitfalls).
    An exception in any process stops the others and is raised here.

    Example:
        >>> notebook_launcher(train, args=(0.1,), num_processes=2, mixed_precision="bf16")  # doctest: +SKIP
    """
    if mixed_precision not in MIXED_PRECISIONS:
        valid = ", ".join(MIXED_PRECISIONS[:-1]) + " or " + MIXED_PRECISIONS[-1]
        raise ValueError(f"mixed_precision={mixed_precision!r}; expected {valid}")
    if num_processes is None:
        import torch

        num_processes = torch.cuda.device_count() if torch.cuda.is_available() else 1
    if num_processes < 1:
        raise ValueError(f"num_processes={num_processes} must be at least 1")
    env = {option("mixed_precision").env[0]: mixed_precision}
    if num_processes == 1 and num_nodes == 1:
        with patch_environment(**env):
            function(*args)
        return
    start_method = start_method or ("fork" if in_interactive_session() else "spawn")
    _check_parent_state(start_method)
    port = int(use_port)
    if port == 0:
        port = free_port()
    elif node_rank == 0 and port_in_use(port):
        raise RuntimeError(
            f"port {port} is already in use (use_port={use_port!r}); pass another use_port, or "
            "'0' for any free port"
        )
    env.update(
        {
            "WORLD_SIZE": str(num_processes * num_nodes),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
    )
    if start_method == "fork":
        env[FORK_LAUNCHED_VAR] = "1"
    _start(_Worker(function, node_rank, num_processes), args, num_processes, start_method, env)


def debug_launcher(
    function: Callable[..., Any], args: Sequence[Any] = (), num_processes: int = 2
) -> None:
    """Run ``function(*args)`` on ``num_processes`` CPU processes (gloo), forked: a quick
    multi-process check from a test (the function must not need CUDA).

    Example:
        >>> def check():
        ...     from accel.state import PartialState
        ...     assert PartialState().num_processes == 2
        >>> debug_launcher(check)  # doctest: +SKIP
    """
    env = {
        option("cpu").env[0]: "true",
        option("mixed_precision").env[0]: "no",
        "WORLD_SIZE": str(num_processes),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        FORK_LAUNCHED_VAR: "1",
    }
    _start(_Worker(function, 0, num_processes), args, num_processes, "fork", env)
