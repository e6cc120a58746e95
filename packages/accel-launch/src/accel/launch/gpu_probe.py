"""Count the machine's GPUs without importing torch (for ``accel config default``).

Order: ``CUDA_VISIBLE_DEVICES`` when set; ``/proc/driver/nvidia/gpus`` (NVIDIA driver, no
subprocess); ``nvidia-smi -L`` if on ``PATH``; AMD ROCm's ``/sys/class/kfd`` nodes. Anything
else counts as no GPU (the config then says CPU).

Example:
    >>> isinstance(count_gpus(), int)
    True
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path


def _visible(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    ids = [part for part in raw.split(",") if part.strip() and part.strip() != "-1"]
    return len(ids)


def _nvidia() -> int:
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return sum(1 for _ in proc.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return 0
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return 0


def _rocm() -> int:
    nodes = Path("/sys/class/kfd/kfd/topology/nodes")
    if not nodes.is_dir():
        return 0
    count = 0
    for node in nodes.iterdir():
        try:
            props = (node / "properties").read_text()
        except OSError:
            continue
        if any(
            line.startswith("simd_count") and line.split()[-1] != "0" for line in props.splitlines()
        ):
            count += 1
    return count


def count_gpus(environ: Mapping[str, str] | None = None) -> int:
    """Number of GPUs this machine offers to a job (0 if none found).

    Example:
        >>> count_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) in (0, 2)
        True
    """
    environ = os.environ if environ is None else environ
    found = _nvidia() or _rocm()
    visible = _visible(environ)
    if found and visible is not None:
        return min(found, visible)
    return found
