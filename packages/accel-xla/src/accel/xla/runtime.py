"""Loading torch-xla safely, and what its runtime says about this process.

Every use of torch-xla in accel goes through :func:`load_torch_xla`, which first checks that
``PJRT_DEVICE`` is set and that torch and torch-xla pair, so that a bad setup fails with one
clear line instead of a crash inside the XLA runtime.

Example:
    >>> xm = load_torch_xla()  # doctest: +SKIP
    >>> xm.xla_device()  # doctest: +SKIP
    device(type='xla', index=0)
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

from accel.xla.versions import check_installed_pair

PJRT_DEVICES = ("TPU", "CPU", "CUDA", "NEURON")


def pjrt_device(source: str = "this XLA job") -> str:
    """The device kind ``PJRT_DEVICE`` names; ``ValueError`` (one line) when it is unset.

    ``source`` says what asked for XLA, for the message.

    Example:
        >>> pjrt_device()  # with PJRT_DEVICE=CPU  # doctest: +SKIP
        'CPU'
    """
    value = os.environ.get("PJRT_DEVICE", "").strip()
    if not value:
        raise ValueError(
            f"{source} runs on XLA, but PJRT_DEVICE is not set; set PJRT_DEVICE to the device "
            f"XLA should drive: {', '.join(PJRT_DEVICES)} (e.g. PJRT_DEVICE=TPU on a TPU VM, "
            "PJRT_DEVICE=CPU to try it on the CPU)"
        )
    return value.upper()


@functools.cache
def load_torch_xla(source: str = "this XLA job") -> ModuleType:
    """Check the setup, import torch-xla, and return ``torch_xla.core.xla_model``.

    Raises ``ValueError`` when ``PJRT_DEVICE`` is unset and ``RuntimeError`` when torch-xla
    is missing or does not pair with torch (one line each, naming the versions to install).

    Example:
        >>> xm = load_torch_xla()  # doctest: +SKIP
    """
    pjrt_device(source)
    check_installed_pair()
    import torch_xla.core.xla_model as xm  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

    return xm


def mark_step() -> None:
    """Cut the traced graph here and run it (``torch_xla.sync()``).

    Example:
        >>> mark_step()  # doctest: +SKIP
    """
    load_torch_xla()
    import torch_xla  # pyright: ignore[reportMissingImports]  # torch-xla: .venv-xla only

    torch_xla.sync()
