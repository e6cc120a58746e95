"""MLflow tracker (``log_with="mlflow"``; needs ``pip install 'accel-core[mlflow]'``).

Everything goes through an ``MlflowClient`` bound to this tracker's store: accel never calls
``mlflow.set_tracking_uri`` (which also rewrites ``os.environ``) nor starts a fluent run, so
two trackers in one process cannot write into each other's store. ``mlflow`` is imported only
when a run starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from accel.core.tracking.base import GeneralTracker, on_main_process
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def _env_tags(tags: dict[str, Any] | None) -> dict[str, Any] | None:
    raw = os.environ.get("MLFLOW_TAGS")
    if raw is None:
        return tags
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(
            f'MLFLOW_TAGS must be a JSON object like \'{{"team": "nlp"}}\', got {raw!r} ({error})'
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError(f"MLFLOW_TAGS must be a JSON object, got {raw!r}")
    return parsed


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """Let MLflow >= 3.7 open a ``file:`` store for the duration of one call.

    Newer MLflow refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; the store
    accel picks under ``logging_dir`` is one, so the flag is set around each store access and
    removed again (a value the user set is left alone).
    """
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


class MLflowTracker(GeneralTracker):
    """Logs to an MLflow run: params from the configuration, metrics with their step.

    The store is ``MLFLOW_TRACKING_URI`` when set, else a local file store in
    ``logging_dir/mlruns`` (open it with ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui
    --backend-store-uri <logging_dir>/mlruns``). The experiment is ``experiment_name`` (the
    ``project_name`` of ``init_trackers``), created on first use. Like Accelerate, the
    environment variables ``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_RUN_ID`` (resume a run),
    ``MLFLOW_TAGS`` (JSON object) and ``MLFLOW_NESTED_RUN`` override the arguments.

    Parameters: values longer than MLflow's limit (6000 characters in MLflow 3) are dropped
    with a warning and the rest are sent in batches of MLflow's maximum, as Accelerate and
    transformers do. Metrics: numbers and one-element tensors; other values are skipped with a
    warning.

    Example:
        >>> import tempfile
        >>> tracker = MLflowTracker("exp", tempfile.mkdtemp())
        >>> tracker.start()  # doctest: +SKIP
        >>> tracker.log({"loss": 0.5}, step=1); tracker.finish()  # doctest: +SKIP
    """

    name = "mlflow"
    requires_logging_directory = True
    #: When this variable names a store, no logging directory is needed.
    store_env_var = "MLFLOW_TRACKING_URI"

    def __init__(
        self,
        experiment_name: str | None = None,
        logging_dir: str | os.PathLike | None = None,
        run_id: str | None = None,
        tags: dict[str, Any] | str | None = None,
        nested_run: bool = False,
        run_name: str | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__()
        self.experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", experiment_name)
        if not self.experiment_name:
            raise ValueError(
                "MLflowTracker needs an experiment name: init_trackers(project_name=...) or "
                "MLFLOW_EXPERIMENT_NAME"
            )
        uri = os.environ.get(self.store_env_var)
        if not uri:
            if logging_dir is None:
                raise ValueError(
                    "MLflowTracker needs a store: pass project_dir= / logging_dir= to the "
                    "Accelerator (a file store in <logging_dir>/mlruns) or set "
                    "MLFLOW_TRACKING_URI"
                )
            uri = Path(os.fspath(logging_dir), "mlruns").absolute().as_uri()
        self.tracking_uri: str = uri
        self.run_id: str | None = os.environ.get("MLFLOW_RUN_ID", run_id)
        # accepted by Accelerate as a JSON string too
        parsed: dict[str, Any] | None = json.loads(tags) if isinstance(tags, str) else tags
        self.tags = _env_tags(parsed)
        nested = os.environ.get("MLFLOW_NESTED_RUN")
        self.nested_run = nested.strip().lower() in _TRUE if nested is not None else nested_run
        self.run_name = run_name
        self.description = description
        self.client: Any = None
        self._run: Any = None

    @property
    def tracker(self) -> Any:
        """The ``mlflow.entities.Run`` (refreshed: its ``data`` shows what was logged)."""
        if self._run is None:
            return None
        with _file_store_allowed(self.tracking_uri):
            return self.client.get_run(self.run_id)

    @on_main_process
    def start(self) -> None:
        from mlflow import MlflowClient
        from mlflow.tracking.context.registry import resolve_tags

        with _file_store_allowed(self.tracking_uri):
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            if self.run_id is not None:
                self.client.update_run(self.run_id, status="RUNNING")
                self._run = self.client.get_run(self.run_id)
                return
            experiment_id = self._experiment_id()
            tags = {str(k): str(v) for k, v in (self.tags or {}).items()}
            if self.description:
                tags["mlflow.note.content"] = self.description
            if self.nested_run:
                import mlflow

                parent = mlflow.active_run()
                if parent is not None:
                    tags["mlflow.parentRunId"] = parent.info.run_id
            self._run = self.client.create_run(
                experiment_id, run_name=self.run_name, tags=resolve_tags(tags)
            )
            self.run_id = self._run.info.run_id

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            tags = {str(k): str(v) for k, v in (self.tags or {}).items()}
            try:
                return self.client.create_experiment(self.experiment_name, tags=tags or None)
            except MlflowException:  # another job created it meanwhile
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {self.experiment_name!r} in {self.tracking_uri} is deleted; "
                "restore it (mlflow experiments restore) or use another project_name"
            )
        return experiment.experiment_id

    def _require_run(self, method: str) -> None:
        if self._run is None:
            raise RuntimeError(f"MLflowTracker.{method} called before start() or after finish()")

    @on_main_process
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """Log ``values`` as run parameters (stringified; too-long values dropped)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        self._require_run("store_init_configuration")
        params = []
        for key, value in values.items():
            text = str(value)
            if len(text) > MAX_PARAM_VAL_LENGTH:
                logger.warning(
                    "MLflowTracker: dropped parameter %r: its value has %d characters, MLflow "
                    "accepts at most %d",
                    key,
                    len(text),
                    MAX_PARAM_VAL_LENGTH,
                )
                continue
            params.append(Param(str(key), text))
        with _file_store_allowed(self.tracking_uri):
            for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
                self.client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_TAGS_PER_BATCH])

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Log numbers and one-element tensors as metrics at ``step`` (0 when ``None``)."""
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        self._require_run("log")
        if kwargs:
            raise TypeError(f"MLflowTracker.log takes no extra options, got {sorted(kwargs)}")
        now = int(time.time() * 1000)
        metrics = []
        for key, value in values.items():
            # one-element torch tensors (numel) and numpy arrays/scalars (size) become numbers
            size = value.numel() if hasattr(value, "numel") else getattr(value, "size", None)
            if size == 1 and hasattr(value, "item"):
                value = value.item()
            if isinstance(value, bool | int | float):
                metrics.append(Metric(str(key), float(value), now, step or 0))
            else:
                logger.warning(
                    "MLflowTracker: skipped %r: a %s is not a number (MLflow metrics are numbers)",
                    key,
                    type(value).__name__,
                )
        with _file_store_allowed(self.tracking_uri):
            for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[i : i + MAX_METRICS_PER_BATCH])

    @on_main_process
    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy one file into the run's artifacts (under ``artifact_path`` if given).

        Example:
            >>> tracker.log_artifact("model_card.md")  # doctest: +SKIP
        """
        self._require_run("log_artifact")
        with _file_store_allowed(self.tracking_uri):
            self.client.log_artifact(self.run_id, os.fspath(local_path), artifact_path)

    @on_main_process
    def log_artifacts(self, local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a folder's files into the run's artifacts.

        Example:
            >>> tracker.log_artifacts("outputs/plots", artifact_path="plots")  # doctest: +SKIP
        """
        self._require_run("log_artifacts")
        with _file_store_allowed(self.tracking_uri):
            self.client.log_artifacts(self.run_id, os.fspath(local_dir), artifact_path)

    @on_main_process
    def log_figure(self, figure: Any, artifact_file: str, **save_kwargs: Any) -> None:
        """Save a matplotlib or plotly ``figure`` as the artifact ``artifact_file``.

        Example:
            >>> tracker.log_figure(fig, "loss.png")  # doctest: +SKIP
        """
        self._require_run("log_figure")
        with _file_store_allowed(self.tracking_uri):
            self.client.log_figure(self.run_id, figure, artifact_file, save_kwargs=save_kwargs)

    @on_main_process
    def finish(self) -> None:
        """Mark the run FINISHED."""
        if self._run is None:
            return
        self._run = None
        with _file_store_allowed(self.tracking_uri):
            self.client.set_terminated(self.run_id)
