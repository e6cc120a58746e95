"""The ``Accelerator``'s process-control and communication methods (``print``,
``wait_for_everyone``, ``main_process_first``, ``on_*``, ``gather``, ``reduce``,
``pad_across_processes``, triggers, ``join_uneven_inputs``): thin layers over ``accel.state``
and ``accel.ops``.

Example:
    >>> from accel.core import Accelerator
    >>> issubclass(Accelerator, ProcessControlMixin)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from accel.core.accelerator_parts import AcceleratorParts
from accel.core.device_mesh import data_parallel_position
from accel.core.mesh_gather import refuse_uneven_sequence_parallel_end
from accel.ops import gather as _gather
from accel.ops import gather_object, pad_across_processes, recursively_apply
from accel.ops import reduce as _reduce
from accel.state import (
    PartialState,
)

F = TypeVar("F", bound=Callable[..., Any])


class ProcessControlMixin(AcceleratorParts):
    """Process control and communication, mixed into :class:`~accel.core.Accelerator`.

    Example:
        >>> accelerator.wait_for_everyone()  # doctest: +SKIP
    """

    # -- process control -----------------------------------------------------------------

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` once per machine.

        Example:
            >>> accelerator.print("epoch done")  # doctest: +SKIP
        """
        self.state.print(*args, **kwargs)

    def wait_for_everyone(self) -> None:
        """Block until every process reaches this call.

        Example:
            >>> accelerator.wait_for_everyone()  # doctest: +SKIP
        """
        self.state.wait_for_everyone()

    def main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on the main process first, then on the others.

        Example:
            >>> with accelerator.main_process_first():  # doctest: +SKIP
            ...     dataset = build_dataset()
        """
        return PartialState().main_process_first()

    def local_main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on each machine's first process first, then on its others.

        Example:
            >>> with accelerator.local_main_process_first():  # doctest: +SKIP
            ...     dataset = build_dataset()
        """
        return PartialState().local_main_process_first()

    def split_between_processes(
        self, inputs: Any, apply_padding: bool = False
    ) -> contextlib.AbstractContextManager[Any]:
        """This process's share of ``inputs`` (see ``PartialState.split_between_processes``).

        Example:
            >>> with accelerator.split_between_processes(prompts) as mine:  # doctest: +SKIP
            ...     outputs = [generate(p) for p in mine]
        """
        return PartialState().split_between_processes(inputs, apply_padding=apply_padding)

    def on_main_process(self, function: F | None = None) -> F:
        """Decorator: run only on the main process.

        Example:
            >>> @accelerator.on_main_process  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_main_process(function)

    def on_local_main_process(self, function: F | None = None) -> F:
        """Decorator: run only on each machine's first process.

        Example:
            >>> @accelerator.on_local_main_process  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_local_main_process(function)

    def on_last_process(self, function: F) -> F:
        """Decorator: run only on the last process.

        Example:
            >>> @accelerator.on_last_process  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_last_process(function)

    def on_process(self, function: F | None = None, process_index: int | None = None) -> F:
        """Decorator: run only on process ``process_index``.

        Example:
            >>> @accelerator.on_process(process_index=1)  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_process(function, process_index=process_index)

    def on_local_process(
        self, function: F | None = None, local_process_index: int | None = None
    ) -> F:
        """Decorator: run only on the process with this index on each machine.

        Example:
            >>> @accelerator.on_local_process(local_process_index=0)  # doctest: +SKIP
            ... def log(msg): print(msg)
        """
        return PartialState().on_local_process(function, local_process_index=local_process_index)

    # -- communication -------------------------------------------------------------------

    def gather(self, tensor: Any) -> Any:
        """Gather tensors from all processes (see ``accel.ops.gather``).

        Example:
            >>> accelerator.gather(torch.tensor([accelerator.process_index]))  # doctest: +SKIP
            tensor([0, 1])
        """
        return _gather(tensor)

    def gather_for_metrics(self, input_data: Any, use_gather_object: bool = False) -> Any:
        """Gather for evaluation, dropping the samples repeated to even out the last batch.

        Non-tensor data (or ``use_gather_object=True``) goes through ``gather_object``. Under
        DeepSpeed Ulysses (``sp_size > 1``) each row is one rank's chunk of a sequence, in rank
        order, as in Accelerate; an uneven last batch is refused there (Accelerate would cut
        rows that are chunks, not samples).

        Example:
            >>> preds = accelerator.gather_for_metrics(logits.argmax(-1))  # doctest: +SKIP
        """
        try:
            recursively_apply(lambda x: x, input_data, error_on_other_type=True)
            all_tensors = True
        except TypeError:
            all_tensors = False
        use_gather_object = use_gather_object or not all_tensors
        copies = data_parallel_position(self.parallelism_config, self.torch_device_mesh)
        if copies is not None:
            from accel.core.mesh_gather import gather_data_parallel

            data = gather_data_parallel(input_data, self.parallelism_config, use_gather_object)
        elif use_gather_object:
            data = gather_object(input_data)
        else:
            data = self.gather(input_data)
        state = self.gradient_state
        if not state.end_of_dataloader or state.remainder <= 0:
            return data
        refuse_uneven_sequence_parallel_end(self.parallelism_config, state.remainder)
        keep = state.remainder
        if use_gather_object:
            return data[:keep]
        return recursively_apply(lambda t: t[:keep], data)

    def reduce(self, tensor: Any, reduction: str = "sum", scale: float = 1.0) -> Any:
        """Reduce tensors across processes (default ``"sum"``; see ``accel.ops.reduce``).

        Example:
            >>> accelerator.reduce(torch.tensor(1.0))  # doctest: +SKIP
            tensor(2.)
        """
        return _reduce(tensor, reduction=reduction, scale=scale)

    def pad_across_processes(
        self, tensor: Any, dim: int = 0, pad_index: int = 0, pad_first: bool = False
    ) -> Any:
        """Pad tensors to the largest size across processes (see ``accel.ops``).

        Example:
            >>> accelerator.pad_across_processes(tokens, dim=1, pad_index=0)  # doctest: +SKIP
        """
        return pad_across_processes(tensor, dim=dim, pad_index=pad_index, pad_first=pad_first)

    def set_trigger(self) -> None:
        """Raise a flag on this process, for :meth:`check_trigger` on all processes.

        Example:
            >>> if loss.isnan(): accelerator.set_trigger()  # doctest: +SKIP
        """
        self.flag_tensor = torch.tensor(1, device=self.device)

    def check_trigger(self) -> bool:
        """Whether any process called :meth:`set_trigger` since the last check; resets it.

        Every process must call it (it is a collective).

        Example:
            >>> if accelerator.check_trigger(): break  # doctest: +SKIP
        """
        flag = (
            self.flag_tensor
            if self.flag_tensor is not None
            else torch.tensor(0, device=self.device)
        )
        fired = bool(self.reduce(flag, reduction="sum").item() >= 1)
        if fired:
            self.flag_tensor = torch.tensor(0, device=self.device)
        return fired

    @contextlib.contextmanager
    def join_uneven_inputs(
        self, joinables: list[Any], even_batches: bool | None = None
    ) -> Iterator[None]:
        """Let DDP processes with fewer batches finish without hanging (``torch`` ``Join``).

        ``even_batches`` temporarily overrides the prepared dataloaders' setting.

        Example:
            >>> with accelerator.join_uneven_inputs([model], even_batches=False):  # doctest: +SKIP
            ...     for batch in loader: ...
        """
        if not self.multi_device:
            yield
            return
        from torch.distributed.algorithms.join import Join

        saved = []
        if even_batches is not None:
            for loader in self._dataloaders:
                sampler: Any = getattr(loader, "batch_sampler", None)
                if hasattr(sampler, "even_batches"):
                    saved.append((sampler, sampler.even_batches))
                    sampler.even_batches = even_batches
        try:
            with Join(joinables):
                yield
        finally:
            for sampler, value in saved:
                sampler.even_batches = value
