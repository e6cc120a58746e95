"""Training strategies: what ``prepare``, ``backward`` and ``no_sync`` do for each kind of job.

Built in: ``single`` (one process), ``ddp`` (DistributedDataParallel), ``fsdp`` (FSDP2
``fully_shard``). Adapter packages add theirs (``deepspeed``, ``xla``) through the entry-point
group ``accel.strategies``.

Example:
    >>> from accel.core.strategies import strategy_for
    >>> strategy_for("NO").__name__
    'SingleDeviceStrategy'
"""

from accel.core.strategies.base import TrainingStrategy
from accel.core.strategies.registry import load_strategy, strategy_for

__all__ = ["TrainingStrategy", "load_strategy", "strategy_for"]
