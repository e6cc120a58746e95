"""The one check that ``ParallelismConfig`` sizes fit the job (torch-free).

``accel launch`` runs it on the sizes given by flag, environment or config file before starting
any process; ``Accelerator`` runs it on the script's ``ParallelismConfig`` against the real
``WORLD_SIZE``. Both raise the same message.

Example:
    >>> check_parallelism_sizes({"dp_shard_size": 2, "tp_size": 2}, 4, "WORLD_SIZE")
    >>> check_parallelism_sizes({"tp_size": 2}, 4, "WORLD_SIZE")
    Traceback (most recent call last):
    ...
    ValueError: ParallelismConfig sizes tp_size=2 multiply to 2, but the job runs 4 processes (WORLD_SIZE); adjust the sizes so that their product is 4
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["check_parallelism_sizes"]


def check_parallelism_sizes(
    sizes: Mapping[str, int],
    num_processes: int,
    processes_source: str,
    sources: Mapping[str, str] | None = None,
) -> None:
    """Raise ``ValueError`` unless ``sizes`` (``{"tp_size": 2, ...}``) multiply to
    ``num_processes``. The message lists each size (with ``sources[name]`` when given, e.g.
    ``"flag --parallelism_config_tp_size"``) and where the process count came from.

    Example:
        >>> check_parallelism_sizes({"tp_size": 2}, 3, "num_processes from flag --num_processes",
        ...                         {"tp_size": "env PARALLELISM_CONFIG_TP_SIZE"})
        Traceback (most recent call last):
        ...
        ValueError: ParallelismConfig sizes tp_size=2 (from env PARALLELISM_CONFIG_TP_SIZE) multiply to 2, but the job runs 3 processes (num_processes from flag --num_processes); adjust the sizes so that their product is 3
    """
    product = 1
    for size in sizes.values():
        product *= size
    if product == num_processes:
        return
    sources = sources or {}
    listing = ", ".join(
        f"{name}={size}" + (f" (from {sources[name]})" if name in sources else "")
        for name, size in sizes.items()
    )
    raise ValueError(
        f"ParallelismConfig sizes {listing} multiply to {product}, but the job runs "
        f"{num_processes} processes ({processes_source}); adjust the sizes so that their "
        f"product is {num_processes}"
    )
