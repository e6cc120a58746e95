"""Background checkpoint writing for ``save_state(async_save=True)``.

The training thread only stages: it copies the checkpoint's tensors into CPU buffers
(:class:`~accel.core.checkpoint.writer.CpuStager`) and returns. A writer thread then writes
the files, flushes them, and the processes agree (over a dedicated gloo group, so the
training's collectives are never interleaved with the writer's) that every rank succeeded
before the main process publishes the folder. At most one save is in flight: the next
``save_state``, ``load_state``, ``end_training`` and ``wait_for_checkpoint`` wait for it, and
so does interpreter exit (the writer is not a daemon thread; ``accel.state.teardown`` then
reports a failed save on stderr and destroys the writer's group before the default group).

Example:
    >>> accelerator.save_state(async_save=True)  # doctest: +SKIP
    >>> accelerator.wait_for_checkpoint()  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from accel.core.checkpoint.writer import CheckpointFile, CpuStager
from accel.state.teardown import register_process_group, register_shutdown


class CheckpointWriteError(RuntimeError):
    """An asynchronous ``save_state`` failed; raised by the next call that waits for it.

    Example:
        >>> str(CheckpointWriteError("the save to 'ckpt' failed"))
        "the save to 'ckpt' failed"
    """


class AsyncCheckpointWriter:
    """Stages checkpoints to CPU and writes them in one background thread, one at a time.

    Example:
        >>> writer = AsyncCheckpointWriter()
        >>> writer.submit(lambda: None, "ckpt")
        >>> writer.wait()
    """

    def __init__(self) -> None:
        self._stager = CpuStager()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._target: str | None = None
        self._group: Any = None
        self._exit_hook = False

    @property
    def in_flight(self) -> bool:
        """Whether a save is being written now.

        Example:
            >>> AsyncCheckpointWriter().in_flight
            False
        """
        return self._thread is not None and self._thread.is_alive()

    @property
    def staging_bytes(self) -> int:
        """Bytes of CPU memory kept for staging (reused by the next save).

        Example:
            >>> AsyncCheckpointWriter().staging_bytes
            0
        """
        return self._stager.nbytes

    def stage(self, files: list[CheckpointFile]) -> list[CheckpointFile]:
        """Copy ``files``' tensors into the staging buffers (waits for the previous save).

        Example:
            >>> AsyncCheckpointWriter().stage([CheckpointFile("a.bin", {"n": 1})])[0].payload
            {'n': 1}
        """
        self.wait()
        return self._stager.stage(files)

    def process_group(self) -> Any:
        """The gloo group the writer threads agree over (``None`` in a single process).

        Created on first use; every process must reach that first use together.

        Example:
            >>> AsyncCheckpointWriter().process_group() is None
            True
        """
        if (
            self._group is None
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            self._group = dist.new_group(backend="gloo")
            register_process_group(self._group)
        return self._group

    def all_succeeded(self, succeeded: bool) -> bool:
        """Whether every process reports success (call from the writer thread).

        Example:
            >>> AsyncCheckpointWriter().all_succeeded(True)
            True
        """
        group = self.process_group()
        if group is None:
            return succeeded
        failures = torch.tensor([0 if succeeded else 1], dtype=torch.int32)
        dist.all_reduce(failures, group=group)
        return int(failures.item()) == 0

    def submit(self, job: Callable[[], None], target: str) -> None:
        """Run ``job`` (writing the checkpoint ``target``) in the writer thread.

        Example:
            >>> writer = AsyncCheckpointWriter()
            >>> writer.submit(lambda: None, "ckpt"); writer.wait()
        """
        self.wait()
        self._target = target
        self._error = None

        def run() -> None:
            try:
                job()
            except BaseException as error:  # handed to whoever waits next
                self._error = error

        self._thread = threading.Thread(target=run, name="accel-checkpoint-writer")
        if not self._exit_hook:  # at exit: finish (and report) the save before groups go
            register_shutdown(self.wait, "the asynchronous save_state")
            self._exit_hook = True
        self._thread.start()

    def wait(self) -> None:
        """Block until the save in flight (if any) is on disk; raise if it failed.

        Example:
            >>> AsyncCheckpointWriter().wait()
        """
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise CheckpointWriteError(
                f"the asynchronous save_state to {self._target!r} failed: "
                f"{type(error).__name__}: {error}. The previous complete checkpoint is intact."
            ) from error
