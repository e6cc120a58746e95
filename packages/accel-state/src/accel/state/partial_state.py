"""``PartialState``: which process this is, on which device, and how processes coordinate."""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from accel.state import env
from accel.state.backends import (
    CollectiveBackend,
)
from accel.state.devices import detect_device_type
from accel.state.enums import DistributedType, PrecisionType
from accel.state.operation_check import check_operation
from accel.state.process_group import (
    adopt_existing_group,
    choose_backend,
    runtime_backend,
    start_process_group,
)
from accel.state.splitting import split_for_process
from accel.state.world import discover_world

F = TypeVar("F", bound=Callable[..., Any])

_INIT_KWARGS = ("backend", "init_method", "timeout")


def _skipped(function: F) -> F:
    @functools.wraps(function)
    def skipped(*args: Any, **kwargs: Any) -> None:
        return None

    return skipped  # type: ignore[return-value]


class PartialState:
    """Process and device information, shared by every instance (the first one sets it up).

    Created with plain ``python`` it describes one process. Started by ``accel launch``,
    ``torchrun`` or an MPI launcher with several processes, the first instance joins them in a
    ``torch.distributed`` process group (gloo on CPU, nccl on CUDA, ...). ``cpu=True`` ignores
    accelerators; keyword arguments (``backend``, ``timeout``, ``init_method``, e.g. from
    ``InitProcessGroupKwargs(...).to_kwargs()``) go to ``init_process_group``.

    Example:
        >>> from accel.state import PartialState
        >>> state = PartialState()
        >>> state.num_processes, state.process_index
        (1, 0)
    """

    _shared_state: dict[str, Any] = {}
    device: torch.device
    _backend: CollectiveBackend | None

    def __init__(self, cpu: bool = False, **kwargs: Any) -> None:
        self.__dict__ = self._shared_state
        if not self.initialized:
            unknown = sorted(set(kwargs) - set(_INIT_KWARGS))
            if unknown:
                raise TypeError(
                    f"PartialState got unexpected keyword arguments {unknown}; accepted: "
                    f"cpu and {', '.join(_INIT_KWARGS)} (see InitProcessGroupKwargs)"
                )
            try:
                self._setup(cpu or env.read_flag(env.USE_CPU), dict(kwargs))
            except BaseException:
                self._shared_state.clear()
                raise
        self.fork_launched = env.str_to_bool(
            os.environ.get(env.FORK_LAUNCHED_VAR, "0"), env.FORK_LAUNCHED_VAR
        )

    def _setup(self, cpu: bool, kwargs: dict[str, Any]) -> None:
        self._cpu = cpu
        self.debug = env.read_flag(env.DEBUG_MODE)
        self._mixed_precision = env.read_choice(env.MIXED_PRECISION, PrecisionType.list(), "no")
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            world, backend = adopt_existing_group()
        else:
            backend = runtime_backend(cpu)
            world = None
            if backend is not None:
                world = backend.runtime_world()
                if world is not None and world.world_size > 1:
                    kwargs.pop("backend", None)
                    backend.init_process_group(
                        rank=world.rank, world_size=world.world_size, **kwargs
                    )
            if world is None:
                world = discover_world()
                if world.world_size > 1:
                    backend = choose_backend(cpu, kwargs.pop("backend", None))
                    start_process_group(world, backend, kwargs)
        self._backend = backend
        self.backend = backend.name if backend is not None else None
        if backend is None:
            self.distributed_type = DistributedType.NO
        else:
            self.distributed_type = DistributedType(backend.distributed_type)
        self.num_processes = world.world_size
        self.process_index = world.rank
        self.local_process_index = world.local_rank
        self.set_device()

    def __repr__(self) -> str:
        backend = f"  Backend: {self.backend}" if self.backend else ""
        return (
            f"Distributed environment: {self.distributed_type}{backend}\n"
            f"Num processes: {self.num_processes}\n"
            f"Process index: {self.process_index}\n"
            f"Local process index: {self.local_process_index}\n"
            f"Device: {self.device}\n"
        )

    @classmethod
    def _reset_state(cls) -> None:
        """Forget the shared state (Accelerate's spelling; prefer :func:`accel.state.reset_state`).

        Example:
            >>> PartialState._reset_state()
        """
        cls._shared_state.clear()

    @property
    def initialized(self) -> bool:
        """Whether the shared state has been set up.

        Example:
            >>> PartialState().initialized
            True
        """
        return self._shared_state != {}

    @property
    def collective_backend(self) -> CollectiveBackend | None:
        """The collective backend this job uses (``None`` for a plain single process).

        Example:
            >>> PartialState().collective_backend is None
            True
        """
        return self._backend

    @property
    def use_distributed(self) -> bool:
        """Whether more than one process takes part.

        Example:
            >>> PartialState().use_distributed
            False
        """
        return self.distributed_type != DistributedType.NO and self.num_processes > 1

    @property
    def mixed_precision(self) -> str:
        """The mixed-precision mode asked for through ``ACCEL_MIXED_PRECISION`` (default ``"no"``).

        Example:
            >>> PartialState().mixed_precision
            'no'
        """
        return self._mixed_precision

    @property
    def is_last_process(self) -> bool:
        """Whether this is the process with the highest index.

        Example:
            >>> PartialState().is_last_process
            True
        """
        return self.process_index == self.num_processes - 1

    @property
    def is_main_process(self) -> bool:
        """Whether this is process 0 (the last process under Megatron-LM).

        Example:
            >>> PartialState().is_main_process
            True
        """
        if self.distributed_type == DistributedType.MEGATRON_LM:
            return self.is_last_process
        return self.process_index == 0

    @property
    def is_local_main_process(self) -> bool:
        """Whether this is the first process on its machine.

        Example:
            >>> PartialState().is_local_main_process
            True
        """
        if self.distributed_type == DistributedType.MEGATRON_LM:
            return self.is_last_process
        return self.local_process_index == 0

    @property
    def default_device(self) -> torch.device:
        """The accelerator this machine offers, or the CPU.

        Example:
            >>> PartialState().default_device.type in ("cpu", "cuda", "mps", "xpu", "npu")
            True
        """
        return torch.device(detect_device_type())

    def set_device(self) -> None:
        """Pick ``self.device`` for this process (and make it current on the accelerator).

        ``ACCEL_TORCH_DEVICE`` overrides the choice. Does nothing once a device is set.

        Example:
            >>> PartialState().set_device()
        """
        if getattr(self, "device", None) is not None:
            return
        forced = env.read_env(env.TORCH_DEVICE)
        if forced:
            try:
                self.device = torch.device(forced)
            except RuntimeError as error:
                name = next(k for k in env.env_names(env.TORCH_DEVICE) if k in os.environ)
                raise ValueError(
                    f"{name}={forced!r} is not a torch device ({error}); expected e.g. "
                    "'cpu', 'cuda', 'cuda:1', 'xpu', 'mps'"
                ) from None
        elif self._backend is not None:
            self.device = self._backend.device(self.local_process_index)
        else:
            self.device = torch.device(detect_device_type(self._cpu))

    def wait_for_everyone(self) -> None:
        """Block until every process has reached this call; no-op with one process.

        In debug mode (``ACCEL_DEBUG_MODE=1``) the processes first compare what they are
        doing, so one that is inside a collective (``gather``, ...) while the others wait
        here makes all of them raise ``DistributedOperationException`` instead of hanging.

        Example:
            >>> PartialState().wait_for_everyone()
        """
        backend = self._backend
        if self.use_distributed and backend is not None:
            if self.debug and backend.supports_object_collectives:
                check_operation("wait_for_everyone", "barrier", self.num_processes)
            backend.barrier(self.device)

    @contextlib.contextmanager
    def _goes_first(self, is_first: bool) -> Iterator[None]:
        if not is_first:
            self.wait_for_everyone()
        try:
            yield
        finally:
            if is_first:
                self.wait_for_everyone()

    def main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on the main process first, then on all the others.

        The main process releases the others even if its block raises, so they never hang.

        Example:
            >>> state = PartialState()
            >>> with state.main_process_first():
            ...     pass  # e.g. download or preprocess once, then the others read the cache
        """
        return self._goes_first(self.is_main_process)

    def local_main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on each machine's first process first, then on that machine's others.

        Example:
            >>> with PartialState().local_main_process_first():
            ...     pass
        """
        return self._goes_first(self.is_local_main_process)

    @contextlib.contextmanager
    def split_between_processes(self, inputs: Any, apply_padding: bool = False) -> Iterator[Any]:
        """Give this process its contiguous share of ``inputs`` inside a ``with`` block.

        ``inputs`` may be a list, tuple, tensor, dict of those (all of one length), or a
        dataset with ``select``. With ``apply_padding`` every share has the same length, made
        up by repeating the last element (drop the repeats after gathering).

        Example:
            >>> with PartialState().split_between_processes(["A", "B", "C"]) as share:
            ...     share  # on 2 processes: ['A', 'B'] on process 0, ['C'] on process 1
            ['A', 'B', 'C']
        """
        if self.num_processes == 1:
            yield inputs
            return
        yield split_for_process(inputs, self.process_index, self.num_processes, apply_padding)

    def _run_if(self, condition: bool, function: F) -> F:
        if condition or not self.use_distributed:
            return function
        return _skipped(function)

    def on_main_process(self, function: F | None = None) -> F:
        """Decorator: run the function only on the main process (``None`` elsewhere).

        Example:
            >>> @PartialState().on_main_process
            ... def report():
            ...     return "done"
            >>> report()
            'done'
        """
        if function is None:
            return self.on_main_process  # type: ignore[return-value]
        return self._run_if(self.is_main_process, function)

    def on_local_main_process(self, function: F | None = None) -> F:
        """Decorator: run the function only on each machine's first process.

        Example:
            >>> @PartialState().on_local_main_process
            ... def report():
            ...     return "done"
            >>> report()
            'done'
        """
        if function is None:
            return self.on_local_main_process  # type: ignore[return-value]
        return self._run_if(self.is_local_main_process, function)

    def on_last_process(self, function: F) -> F:
        """Decorator: run the function only on the last process.

        Example:
            >>> @PartialState().on_last_process
            ... def report():
            ...     return "done"
            >>> report()
            'done'
        """
        return self._run_if(self.is_last_process, function)

    def _check_index(self, name: str, value: Any, count: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}={value!r} must be an int")
        limit = count if self.use_distributed else None
        if value < 0 or (limit is not None and value >= limit):
            valid = f"0..{limit - 1}" if limit is not None else "a non-negative int"
            raise ValueError(
                f"{name}={value} is out of range; this job has {count} such processes, so "
                f"valid values are {valid}"
            )

    def on_process(self, function: F | None = None, process_index: int | None = None) -> F:
        """Decorator: run the function only on the process with index ``process_index``.

        Example:
            >>> @PartialState().on_process(process_index=0)
            ... def report():
            ...     return "done"
            >>> report()
            'done'
        """
        self._check_index("process_index", process_index, self.num_processes)
        if function is None:
            return functools.partial(self.on_process, process_index=process_index)  # type: ignore[return-value]
        return self._run_if(self.process_index == process_index, function)

    def on_local_process(
        self, function: F | None = None, local_process_index: int | None = None
    ) -> F:
        """Decorator: run the function only on the process with this index on each machine.

        Example:
            >>> @PartialState().on_local_process(local_process_index=0)
            ... def report():
            ...     return "done"
            >>> report()
            'done'
        """
        local_count = int(os.environ.get("LOCAL_WORLD_SIZE", self.num_processes))
        self._check_index("local_process_index", local_process_index, local_count)
        if function is None:
            return functools.partial(  # type: ignore[return-value]
                self.on_local_process, local_process_index=local_process_index
            )
        return self._run_if(self.local_process_index == local_process_index, function)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on each machine's first process only.

        Example:
            >>> PartialState().print("hello")
            hello
        """
        if self.is_local_main_process:
            builtins.print(*args, **kwargs)

    def destroy_process_group(self, group: Any = None) -> None:
        """Destroy ``group`` (default: the default process group) if one exists.

        Does nothing for the default group of a fork-launched notebook job.

        Example:
            >>> PartialState().destroy_process_group()
        """
        if self.fork_launched and group is None:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group(group)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("__") and not self._shared_state:
            raise AttributeError(
                f"`PartialState` object has no attribute `{name}`. This happens if "
                "`PartialState._reset_state()` (or accel.state.reset_state()) was called after "
                "this object was made: the shared state is gone, so create a new "
                "`PartialState()` or `Accelerator` and use it"
            )
        raise AttributeError(f"'PartialState' object has no attribute {name!r}")
