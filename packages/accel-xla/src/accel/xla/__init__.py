"""accel.xla: torch-xla (TPU, and XLA's CPU device) behind the ``Accelerator``.

Nothing here imports torch-xla until it is used: ``install_xla`` and the version checks work
before torch-xla is installed (or while a mismatched one is).

Example:
    >>> from accel.xla import install_xla
    >>> install_xla(dry_run=True)[-1][-1]  # with torch 2.9 installed
    'torch-xla==2.9.*'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accel.state.lazy import lazy_exports
from accel.state.versions import require_siblings

require_siblings("accel-xla")  # one release of accel installed, or a clear ImportError

_EXPORTS = {
    "XLA_BACKEND": ".backend",
    "XLABackend": ".backend",
    "XLAStrategy": ".strategy",
    "XLAOptimizer": ".optimizer",
    "reduce_gradients": ".optimizer",
    "mark_steps_per_batch": ".loader",
    "install_xla": ".install",
    "check_installed_pair": ".versions",
    "pairing_problem": ".versions",
    "load_torch_xla": ".runtime",
    "mark_step": ".runtime",
    "pjrt_device": ".runtime",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from accel.xla.backend import XLA_BACKEND, XLABackend
    from accel.xla.install import install_xla
    from accel.xla.loader import mark_steps_per_batch
    from accel.xla.optimizer import XLAOptimizer, reduce_gradients
    from accel.xla.runtime import load_torch_xla, mark_step, pjrt_device
    from accel.xla.strategy import XLAStrategy
    from accel.xla.versions import check_installed_pair, pairing_problem
