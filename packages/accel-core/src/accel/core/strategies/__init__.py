"""Training strategies: what ``prepare``, ``backward`` and ``no_sync`` do for each kind of job.

Built in: ``single`` (one process), ``ddp`` (DistributedDataParallel), ``fsdp`` (FSDP2
``fully_shard``). Adapter packages add theirs (``deepspeed``, ``xla``) through the entry-point
group ``accel.strategies``; ``ACCEL_STRATEGY=<name>`` picks one by name. How to write one:
``docs/strategies.md``.

Example:
    >>> from accel.core.strategies import strategy_for
    >>> strategy_for("NO").__name__
    'SingleDeviceStrategy'
"""

from accel.core.checkpoint.context import CheckpointContext
from accel.core.strategies.base import TrainingStrategy
from accel.core.strategies.prepared import PreparedObjects
from accel.core.strategies.registry import chosen_strategy, load_strategy, strategy_for

__all__ = [
    "CheckpointContext",
    "PreparedObjects",
    "TrainingStrategy",
    "chosen_strategy",
    "load_strategy",
    "strategy_for",
]
