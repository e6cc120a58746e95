"""Weights & Biases tracker (``log_with="wandb"``; needs ``pip install 'accel-core[wandb]'``).

``wandb`` is imported only when a run starts, so importing accel never pays for it.
"""

from __future__ import annotations

from typing import Any

from accel.core.tracking.base import GeneralTracker, on_main_process
from accel.state.process_logging import library_logger

logger = library_logger(__name__)


class WandBTracker(GeneralTracker):
    """Logs to a W&B run: ``wandb.init(project=run_name, **kwargs)`` on the main process.

    ``init_kwargs={"wandb": {...}}`` reaches ``wandb.init`` (``entity``, ``name``, ``dir``,
    ``mode``, ``tags``, ...; a ``project`` there overrides ``run_name``). The configuration
    goes to ``run.config``; ``log`` passes values and ``log_kwargs={"wandb": {...}}`` to
    ``run.log``. Offline: set ``WANDB_MODE=offline`` or ``init_kwargs={"wandb": {"mode":
    "offline"}}``; the run is then written under ``WANDB_DIR`` (default: the current folder)
    as ``wandb/offline-run-*`` for a later ``wandb sync``. ``finish`` ends the run and, when no
    other W&B run is open, stops the ``wandb-core`` service process.

    Example:
        >>> tracker = WandBTracker("my-project", mode="offline")
        >>> tracker.start()  # doctest: +SKIP
        >>> tracker.log({"loss": 0.5}, step=1); tracker.finish()  # doctest: +SKIP
    """

    name = "wandb"
    requires_logging_directory = False

    def __init__(self, run_name: str, **kwargs: Any) -> None:
        super().__init__()
        self.run_name = run_name
        self.init_kwargs = kwargs
        self.run: Any = None

    @property
    def tracker(self) -> Any:
        """The ``wandb`` run (``None`` before ``start`` and after ``finish``)."""
        return self.run

    @on_main_process
    def start(self) -> None:
        import wandb

        self.run = wandb.init(**{"project": self.run_name, **self.init_kwargs})

    def _require_run(self, method: str) -> Any:
        if self.run is None:
            raise RuntimeError(f"WandBTracker.{method} called before start() or after finish()")
        return self.run

    @on_main_process
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """Add ``values`` to ``run.config`` (later calls may change earlier values)."""
        self._require_run("store_init_configuration").config.update(values, allow_val_change=True)

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """``run.log(values, step=step, **kwargs)``: numbers, tensors, strings, W&B media."""
        self._require_run("log").log(values, step=step, **kwargs)

    @on_main_process
    def log_images(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Log each ``key: [image, ...]`` as a list of ``wandb.Image`` (arrays, tensors, PIL).

        Example:
            >>> import numpy as np
            >>> tracker.log_images({"samples": [np.zeros((8, 8, 3), "uint8")]})  # doctest: +SKIP
        """
        import wandb

        run = self._require_run("log_images")
        for key, images in values.items():
            if not isinstance(images, list | tuple):
                raise TypeError(
                    f"WandBTracker.log_images: {key!r} must be a list of images, got "
                    f"{type(images).__name__}"
                )
            run.log({key: [wandb.Image(image) for image in images]}, step=step, **kwargs)

    @on_main_process
    def log_table(
        self,
        table_name: str,
        columns: list[str | int] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Log a ``wandb.Table`` from ``columns`` + ``data`` (rows) or a pandas ``dataframe``.

        Example:
            >>> tracker.log_table("preds", columns=["id", "label"], data=[[0, "cat"]])  # doctest: +SKIP
        """
        import wandb

        if dataframe is None and data is None:
            raise ValueError(f"WandBTracker.log_table({table_name!r}): pass data= or dataframe=")
        table = wandb.Table(columns=columns, data=data, dataframe=dataframe)
        self._require_run("log_table").log({table_name: table}, step=step, **kwargs)

    @on_main_process
    def finish(self) -> None:
        """End the run; stop the ``wandb-core`` service unless another run is still open."""
        if self.run is None:
            return
        import wandb

        run, self.run = self.run, None
        run.finish()
        if wandb.run is None:  # no other global run: nothing needs the service any more
            wandb.teardown()
