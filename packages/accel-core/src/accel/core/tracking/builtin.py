"""Built-in trackers: JSONL (no dependency) and TensorBoard."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from accel.core.tracking.base import GeneralTracker, on_main_process
from accel.state.atomic_files import atomic_open
from accel.state.process_logging import library_logger

logger = library_logger(__name__)


def _plain(value: Any, key: str) -> Any:
    """``value`` as JSON-ready data: tensors and numpy scalars become numbers or lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN/inf as "nan"/"inf"
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, key) for v in value]
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        return _plain(value.tolist(), key)
    raise TypeError(
        f"cannot log {key!r}: a {type(value).__name__} is not a number, string, bool, list, "
        "dict or tensor"
    )


class JSONLTracker(GeneralTracker):
    """Appends one JSON line per ``log`` call to ``logging_dir/run_name/metrics.jsonl``.

    Each line is ``{"step": ..., "time": <unix seconds>, "values": {...}}``; tensors are
    converted with ``tolist()``, non-finite floats written as strings. The configuration passed
    to ``init_trackers`` goes to ``config.json`` beside it. Needs no service and no package.
    Use ``log_with="jsonl"``.

    Example:
        >>> import tempfile
        >>> t = JSONLTracker("run", tempfile.mkdtemp()); t.start()
        >>> t.log({"loss": 0.5}, step=1); t.finish()
        >>> json.loads(open(t.path).read())["values"]
        {'loss': 0.5}
    """

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike, **kwargs: Any) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"JSONLTracker takes no extra options, got {sorted(kwargs)}")
        self.run_name = run_name
        self.logging_dir = os.path.join(os.fspath(logging_dir), run_name)
        self.path = os.path.join(self.logging_dir, "metrics.jsonl")
        self._file: Any = None

    @property
    def tracker(self) -> Any:
        """The open metrics file."""
        return self._file

    @on_main_process
    def start(self) -> None:
        os.makedirs(self.logging_dir, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finish()

    @on_main_process
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        data = {str(k): _plain(v, str(k)) for k, v in values.items()}
        target = os.path.join(self.logging_dir, "config.json")
        with atomic_open(target, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        if self._file is None:
            raise RuntimeError("JSONLTracker.log called before start() or after finish()")
        row = {"step": step, "time": time.time(), "values": self._values(values)}
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()

    @staticmethod
    def _values(values: dict[str, Any]) -> dict[str, Any]:
        return {str(k): _plain(v, str(k)) for k, v in values.items()}

    @on_main_process
    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardTracker(GeneralTracker):
    """Writes TensorBoard event files to ``logging_dir/run_name`` (needs ``tensorboard``).

    Numbers go to ``add_scalar``, strings to ``add_text``, dicts of numbers to ``add_scalars``;
    ``init_kwargs={"tensorboard": {...}}`` reaches ``SummaryWriter``. The configuration is
    stored with ``add_hparams``. Use ``log_with="tensorboard"``.

    Example:
        >>> import tempfile
        >>> t = TensorBoardTracker("run", tempfile.mkdtemp())  # doctest: +SKIP
        >>> t.start(); t.log({"loss": 0.5}, step=1); t.finish()  # doctest: +SKIP
    """

    name = "tensorboard"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike, **kwargs: Any) -> None:
        super().__init__()
        self.run_name = run_name
        self.logging_dir = os.path.join(os.fspath(logging_dir), run_name)
        self.init_kwargs = kwargs
        self.writer: Any = None

    @property
    def tracker(self) -> Any:
        """The ``SummaryWriter``."""
        return self.writer

    @on_main_process
    def start(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(self.logging_dir, **self.init_kwargs)

    @on_main_process
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        hparams = {
            k: v if isinstance(v, bool | int | float | str) or v is None else str(v)
            for k, v in values.items()
        }
        self.writer.add_hparams(hparams, metric_dict={}, run_name=".")
        self.writer.flush()

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        for key, value in values.items():
            if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
                value = value.item()
            if isinstance(value, bool | int | float):
                self.writer.add_scalar(key, value, global_step=step, **kwargs)
            elif isinstance(value, str):
                self.writer.add_text(key, value, global_step=step, **kwargs)
            elif isinstance(value, dict):
                self.writer.add_scalars(key, value, global_step=step, **kwargs)
            else:
                logger.warning(
                    "TensorBoardTracker: skipped %r, a %s is not a number, string or dict",
                    key,
                    type(value).__name__,
                )
        self.writer.flush()

    @on_main_process
    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
