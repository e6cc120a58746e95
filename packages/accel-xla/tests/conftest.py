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

import pytest

HAS_TORCH_XLA = importlib.util.find_spec("torch_xla") is not None

NEEDS_TORCH_XLA = (
    "needs torch-xla, which pairs only with torch 2.9: runs in .venv-xla "
    "(PJRT_DEVICE=CPU; see docs/xla.md and .ci/run)"
)

if importlib.util.find_spec("accel.xla") is None:  # not installed: the dev environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

if HAS_TORCH_XLA:
    os.environ.setdefault("PJRT_DEVICE", "CPU")
    import torch_xla

    # torch's autograd engine sizes its device queues at the first backward pass; XLA's
    # device must exist by then, or a later backward on it fails inside the engine.
    torch_xla.device()


class _SkippedWithoutTorchXla(pytest.Module):
    """A ``test_xla_*`` file collected where torch-xla is missing: reported as one skip."""

    def _getobj(self):  # importing the file would fail on ``import torch_xla``
        pytest.skip(f"{self.path.name} {NEEDS_TORCH_XLA}", allow_module_level=True)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector):
    """``test_xla_*`` files show as skipped, with the reason, where torch-xla is missing."""
    if not HAS_TORCH_XLA and module_path.name.startswith("test_xla_"):
        return _SkippedWithoutTorchXla.from_parent(parent, path=module_path)
    return None
