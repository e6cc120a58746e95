"""accel-xla's tests: the torch-free parts run everywhere, ``test_xla_*`` need torch-xla.

The workspace's main environment has no torch-xla (it keeps the newest torch, which
torch-xla 2.9 does not pair with), so there only the version, install and wiring tests run,
against ``src/`` put on the path. The XLA environment (``.venv-xla``, see docs/xla.md) runs
everything on XLA's CPU device (``PJRT_DEVICE=CPU``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

HAS_TORCH_XLA = importlib.util.find_spec("torch_xla") is not None

collect_ignore_glob = [] if HAS_TORCH_XLA else ["test_xla_*.py"]

if importlib.util.find_spec("accel.xla") is None:  # not installed: the dev environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

if HAS_TORCH_XLA:
    os.environ.setdefault("PJRT_DEVICE", "CPU")
    import torch_xla

    # torch's autograd engine sizes its device queues at the first backward pass; XLA's
    # device must exist by then, or a later backward on it fails inside the engine.
    torch_xla.device()
