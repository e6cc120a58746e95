"""Which kind of device this machine offers torch."""

from __future__ import annotations

from accel.state import env
from accel.state.availability import (
    is_cuda_available,
    is_mps_available,
    is_npu_available,
    is_xpu_available,
)

DEVICE_TYPES = ("cuda", "xpu", "npu", "mps", "cpu")


def detect_device_type(cpu: bool = False) -> str:
    """The device type to compute on.

    ``cpu=True`` or ``ACCEL_USE_CPU=1`` forces ``"cpu"``; ``ACCEL_TORCH_DEVICE`` names one
    explicitly (its type part, e.g. ``cuda`` of ``cuda:1``). Otherwise the first present of
    npu, cuda, xpu, mps, and finally cpu. (NPU comes before CUDA because ``torch_npu`` can
    masquerade as CUDA.)

    Example:
        >>> detect_device_type(cpu=True)
        'cpu'
    """
    if cpu or env.read_flag(env.USE_CPU):
        return "cpu"
    forced = env.read_env(env.TORCH_DEVICE)
    if forced:
        kind = forced.split(":", 1)[0].strip().lower()
        if kind not in DEVICE_TYPES and kind != "xla":
            raise ValueError(
                f"{env.PREFIX}{env.TORCH_DEVICE}={forced!r} names an unknown device type; "
                f"expected one of {', '.join(DEVICE_TYPES)} (optionally with ':index')"
            )
        return kind
    if is_npu_available():
        return "npu"
    if is_cuda_available():
        return "cuda"
    if is_xpu_available():
        return "xpu"
    if is_mps_available():
        return "mps"
    return "cpu"
