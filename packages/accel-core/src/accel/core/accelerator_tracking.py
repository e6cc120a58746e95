"""The ``Accelerator``'s experiment-tracking methods: ``trackers``, ``init_trackers``,
``get_tracker``, ``log``, ``end_training``.

Example:
    >>> from accel.core import Accelerator
    >>> issubclass(Accelerator, TrackingMixin)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from accel.core.accelerator_parts import AcceleratorParts


class TrackingMixin(AcceleratorParts):
    """Experiment tracking, mixed into :class:`~accel.core.Accelerator`.

    Example:
        >>> accelerator.log({"loss": 0.5}, step=1)  # doctest: +SKIP
    """

    # -- experiment tracking -------------------------------------------------------------

    @property
    def trackers(self) -> list[Any]:
        """The trackers started by :meth:`init_trackers`.

        Example:
            >>> accelerator.trackers  # doctest: +SKIP
            []
        """
        return self.__dict__.setdefault("_trackers", [])

    def init_trackers(
        self,
        project_name: str,
        config: dict[str, Any] | None = None,
        init_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Start a run named ``project_name`` on every tracker in ``log_with``.

        ``config`` is stored as the run's hyperparameters; ``init_kwargs`` maps tracker names
        to keyword arguments for their constructors. Like Accelerate, only the main process
        creates trackers; elsewhere this does nothing and ``get_tracker`` returns a blank one.

        Example:
            >>> accelerator = Accelerator(log_with="jsonl", project_dir="runs")  # doctest: +SKIP
            >>> accelerator.init_trackers("exp1", config={"lr": 1e-3})  # doctest: +SKIP
        """
        from accel.core.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, filter_trackers

        if not self.is_main_process:
            return
        init_kwargs = init_kwargs or {}
        started = []
        for entry in filter_trackers(self.log_with, self.logging_dir):
            if not isinstance(entry, str):
                started.append(entry)
                continue
            cls = LOGGER_TYPE_TO_CLASS[entry]
            # a tracker class's constructor takes (run_name, [logging_dir], **kwargs), not
            # GeneralTracker's own (_blank)
            create = cast("Callable[..., GeneralTracker]", cls)
            options = dict(init_kwargs.get(entry, {}))
            if cls.requires_logging_directory:
                directory = options.pop("logging_dir", self.logging_dir)  # init_kwargs may override
                started.append(create(project_name, directory, **options))
            else:
                started.append(create(project_name, **options))
        for index, tracker in enumerate(started):
            try:
                tracker.start()
            except BaseException:
                for done in started[:index]:  # e.g. stop a wandb service already running
                    done.finish()
                raise
        if config is not None:
            for tracker in started:
                tracker.store_init_configuration(config)
        self.trackers.extend(started)

    def get_tracker(self, name: str, unwrap: bool = False) -> Any:
        """The tracker called ``name`` (its underlying run/writer object with ``unwrap=True``).

        Example:
            >>> accelerator.get_tracker("jsonl")  # doctest: +SKIP
        """
        from accel.core.tracking import GeneralTracker

        if not self.trackers:
            return GeneralTracker(_blank=True)
        for tracker in self.trackers:
            if tracker.name == name:
                return tracker.tracker if unwrap else tracker
        names = [t.name for t in self.trackers]
        raise ValueError(f"get_tracker: no tracker named {name!r}; started trackers: {names}")

    def log(
        self,
        values: dict[str, Any],
        step: int | None = None,
        log_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Log ``values`` at ``step`` to every tracker (main process only).

        Example:
            >>> accelerator.log({"loss": 0.25}, step=100)  # doctest: +SKIP
        """
        if not self.is_main_process:
            return
        log_kwargs = log_kwargs or {}
        for tracker in self.trackers:
            tracker.log(values, step=step, **log_kwargs.get(tracker.name, {}))

    def end_training(self) -> None:
        """Finish every tracker and tear down the process group; call at the end of a script.

        Example:
            >>> accelerator.end_training()  # doctest: +SKIP
        """
        self.wait_for_checkpoint()
        failures = []
        for tracker in self.trackers:  # every tracker gets to finish, even after a failure
            try:
                tracker.finish()
            except Exception as error:
                failures.append((tracker, error))
        self.state.destroy_process_group()
        if failures:
            names = ", ".join(
                f"{getattr(t, 'name', type(t).__name__)} ({e!r})" for t, e in failures
            )
            first = failures[0][1]
            raise RuntimeError(f"end_training: finishing trackers failed: {names}") from first
