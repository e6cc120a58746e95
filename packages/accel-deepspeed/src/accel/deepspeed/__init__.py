"""accel.deepspeed: DeepSpeed ZeRO behind the ``Accelerator``.

Installed, it registers the ``deepspeed`` training strategy: an ``Accelerator`` given a
:class:`DeepSpeedPlugin` (or started by ``accel launch --use_deepspeed``) builds DeepSpeed
engines in ``prepare``. Names load on first use; ``deepspeed`` itself is imported only when an
engine or ``zero3_init_context`` is needed.

Example:
    >>> from accel.core import Accelerator  # doctest: +SKIP
    >>> from accel.deepspeed import DeepSpeedPlugin  # doctest: +SKIP
    >>> accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))  # doctest: +SKIP
    >>> model, optimizer, loader = accelerator.prepare(model, optimizer, loader)  # doctest: +SKIP
"""

from __future__ import annotations

from accel.state.lazy import lazy_exports
from accel.state.versions import require_siblings

require_siblings("accel-deepspeed")  # one release of accel installed, or a clear ImportError

_EXPORTS = {
    "DeepSpeedPlugin": ".plugin",
    "DummyOptim": ".dummies",
    "DummyScheduler": ".dummies",
    "DeepSpeedConfig": ".config",
    "HfDeepSpeedConfig": ".config",
    "DeepSpeedStrategy": ".strategy",
    "DeepSpeedEngineWrapper": ".wrappers",
    "DeepSpeedOptimizerWrapper": ".wrappers",
    "DeepSpeedSchedulerWrapper": ".wrappers",
    "zero3_init_context": ".zero3",
    "gathered_state_dict": ".zero3",
    "require_deepspeed": ".availability",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
