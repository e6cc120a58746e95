"""NVIDIA GPUs as NVML sees them: names and memory, without initialising CUDA or importing torch.

NVML is the driver's management library (what ``nvidia-smi`` uses). Its Python bindings come
with ``pip install accel-core[cuda]`` (the ``nvidia-ml-py`` package, imported as ``pynvml``).
Asking NVML creates no CUDA context, so it costs no GPU memory and is safe in the launcher.
Without the bindings, or without an NVIDIA driver, :func:`nvml_report` says which is missing
and :func:`nvml_free_memory` returns ``None`` so callers fall back to torch.

Example:
    >>> from accel.state.nvml import nvml_report
    >>> report = nvml_report()
    >>> report.available or bool(report.reason)
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

INSTALL_HINT = "pip install nvidia-ml-py (it comes with accel-core[cuda] and accel-launch[cuda])"


@dataclass(frozen=True)
class NvmlDevice:
    """One GPU: NVML's index (all GPUs, ``CUDA_VISIBLE_DEVICES`` ignored), name, UUID, bytes.

    Example:
        >>> NvmlDevice(0, "NVIDIA A100", "GPU-1234", total=80 * 2**30, free=79 * 2**30).name
        'NVIDIA A100'
    """

    index: int
    name: str
    uuid: str
    total: int
    free: int


@dataclass(frozen=True)
class NvmlReport:
    """What NVML says: its driver and GPUs, or why it could not be asked (``reason``).

    Example:
        >>> NvmlReport(available=False, reason="nvidia-ml-py is not installed").summary()
        'unavailable: nvidia-ml-py is not installed'
    """

    available: bool
    reason: str = ""
    driver_version: str | None = None
    devices: tuple[NvmlDevice, ...] = ()

    def summary(self) -> str:
        """One line for ``accel env``.

        Example:
            >>> NvmlReport(True, driver_version="550.54", devices=()).summary()
            'driver 550.54, 0 GPUs'
        """
        if not self.available:
            return f"unavailable: {self.reason}"
        gpus = "; ".join(
            f"{d.index}: {d.name}, {d.free / 2**30:.1f}/{d.total / 2**30:.1f} GiB free"
            for d in self.devices
        )
        count = f"{len(self.devices)} GPU{'' if len(self.devices) == 1 else 's'}"
        return f"driver {self.driver_version}, {count}" + (f" ({gpus})" if gpus else "")


def _bindings() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def _session(pynvml: ModuleType) -> Iterator[None]:
    pynvml.nvmlInit()
    try:
        yield
    finally:
        pynvml.nvmlShutdown()


def nvml_report() -> NvmlReport:
    """The driver version and every GPU's name and memory, or why NVML cannot tell.

    Example:
        >>> nvml_report().summary()  # doctest: +SKIP
        'driver 550.54.15, 1 GPU (0: NVIDIA A100-SXM4-80GB, 79.1/80.0 GiB free)'
    """
    pynvml = _bindings()
    if pynvml is None:
        return NvmlReport(False, f"nvidia-ml-py is not installed; {INSTALL_HINT}")
    try:
        with _session(pynvml):
            devices = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                devices.append(
                    NvmlDevice(
                        index,
                        _text(pynvml.nvmlDeviceGetName(handle)),
                        _text(pynvml.nvmlDeviceGetUUID(handle)),
                        int(memory.total),
                        int(memory.free),
                    )
                )
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError as err:
        return NvmlReport(False, f"no usable NVIDIA driver (NVML: {err})")
    return NvmlReport(True, driver_version=driver, devices=tuple(devices))


def nvml_free_memory(uuids: Sequence[str]) -> dict[str, int] | None:
    """Free bytes of the GPUs with these UUIDs (as torch gives them, with or without ``GPU-``).

    ``None`` when NVML cannot be asked (no bindings, no driver); UUIDs NVML does not know are
    left out, so callers measure those another way.

    Example:
        >>> nvml_free_memory(["GPU-00000000-0000-0000-0000-000000000000"]) in (None, {})
        True
    """
    pynvml = _bindings()
    if pynvml is None:
        return None
    free: dict[str, int] = {}
    try:
        with _session(pynvml):
            for uuid in uuids:
                key = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(key)
                except pynvml.NVMLError:
                    continue
                free[uuid] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)
    except pynvml.NVMLError:
        return None
    return free
