"""The ``Accelerator``'s read-only view of the job: processes, device, precision, mesh
ranks, dataloader and project settings, gradient-accumulation state.

Every property reads the shared state (``AcceleratorState``, ``GradientState``) or the
configuration objects the ``Accelerator`` was built with; nothing here changes the job.

Example:
    >>> from accel.core import Accelerator
    >>> issubclass(Accelerator, AcceleratorView)
    True
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from accel.core.accelerator_parts import AcceleratorParts
from accel.core.device_mesh import local_rank
from accel.state import DistributedType


class AcceleratorView(AcceleratorParts):
    """What the job looks like, mixed into :class:`~accel.core.Accelerator`.

    Example:
        >>> from accel.core import Accelerator
        >>> Accelerator().num_processes
        1
    """

    # -- what the job looks like ---------------------------------------------------------

    @property
    def distributed_type(self) -> DistributedType:
        """The kind of job: ``NO``, ``MULTI_CPU``, ``MULTI_GPU``, ``FSDP``, ...

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().distributed_type
            <DistributedType.NO: 'NO'>
        """
        return self.state.distributed_type

    @property
    def num_processes(self) -> int:
        """How many processes run this script.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().num_processes
            1
        """
        return self.state.num_processes

    @property
    def process_index(self) -> int:
        """This process's index, 0 to ``num_processes - 1``.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().process_index
            0
        """
        return self.state.process_index

    @property
    def local_process_index(self) -> int:
        """This process's index on its machine.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().local_process_index
            0
        """
        return self.state.local_process_index

    @property
    def device(self) -> torch.device:
        """The device this process computes on.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator(cpu=True).device
            device(type='cpu')
        """
        return self.state.device

    @property
    def is_main_process(self) -> bool:
        """Whether this is the main process.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().is_main_process
            True
        """
        return self.state.is_main_process

    @property
    def is_local_main_process(self) -> bool:
        """Whether this is the first process on its machine.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().is_local_main_process
            True
        """
        return self.state.is_local_main_process

    @property
    def is_last_process(self) -> bool:
        """Whether this is the last process.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().is_last_process
            True
        """
        return self.state.is_last_process

    @property
    def use_distributed(self) -> bool:
        """Whether more than one process takes part.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().use_distributed
            False
        """
        return self.state.use_distributed

    @property
    def multi_device(self) -> bool:
        """Whether several processes each drive a device (DDP-style data parallelism).

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().multi_device
            False
        """
        return self.distributed_type.value.startswith("MULTI_") and self.num_processes > 1

    @property
    def mixed_precision(self) -> str:
        """The mixed-precision mode: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"fp8"``.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator(mixed_precision="bf16").mixed_precision
            'bf16'
        """
        return self.state.mixed_precision

    @property
    def is_fsdp2(self) -> bool:
        """Whether models are sharded with FSDP2.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().is_fsdp2
            False
        """
        return self.state.is_fsdp2

    @property
    def parallelism_config(self) -> Any:
        """The ``parallelism_config`` given to the state (``None`` unless one was passed);
        TRL's ``SFTTrainer`` reads it to decide on context parallelism.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().parallelism_config is None
            True
        """
        return self.state.parallelism_config

    @property
    def torch_device_mesh(self) -> Any:
        """The DeviceMesh built from ``parallelism_config`` (``None`` without one): named dims
        ``dp_replicate``, ``dp_shard``, ``cp``, ``tp`` (the enabled ones) and the flattened
        ``dp``, ``dp_shard_cp``, ``dp_cp``.

        Example:
            >>> accelerator.torch_device_mesh["tp"].size()  # doctest: +SKIP
            2
        """
        return getattr(self.state, "device_mesh", None)

    @property
    def is_composable_parallelism_enabled(self) -> bool:
        """Whether models are prepared on the device mesh (FSDP2 and/or tensor parallelism).

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().is_composable_parallelism_enabled
            False
        """
        config = self.parallelism_config
        return self.is_fsdp2 or bool(config is not None and config.tp_enabled)

    def _mesh_rank(self, dim: str, what: str) -> int:
        config = self.parallelism_config
        if config is None:
            raise RuntimeError(
                f"{what} is only defined with a parallelism_config: pass "
                "Accelerator(parallelism_config=ParallelismConfig(...)) first"
            )
        return local_rank(self.torch_device_mesh, dim, config._sizes[dim] > 1)

    @property
    def data_parallel_rank(self) -> int:
        """This process's index along ``dp_replicate`` (0 when that dimension is off).

        Example:
            >>> accelerator.data_parallel_rank  # doctest: +SKIP
            0
        """
        return self._mesh_rank("dp_replicate", "data_parallel_rank")

    @property
    def data_parallel_shard_rank(self) -> int:
        """This process's index along ``dp_shard`` (0 when that dimension is off).

        Example:
            >>> accelerator.data_parallel_shard_rank  # doctest: +SKIP
            1
        """
        return self._mesh_rank("dp_shard", "data_parallel_shard_rank")

    @property
    def tensor_parallel_rank(self) -> int:
        """This process's index along ``tp`` (0 when tensor parallelism is off).

        Example:
            >>> accelerator.tensor_parallel_rank  # doctest: +SKIP
            1
        """
        return self._mesh_rank("tp", "tensor_parallel_rank")

    @property
    def context_parallel_rank(self) -> int:
        """This process's index along ``cp`` (0 when context parallelism is off).

        Example:
            >>> accelerator.context_parallel_rank  # doctest: +SKIP
            0
        """
        return self._mesh_rank("cp", "context_parallel_rank")

    def maybe_context_parallel(
        self,
        buffers: list[torch.Tensor] | None = None,
        buffer_seq_dims: list[int] | None = None,
        no_restore_buffers: set[torch.Tensor] | None = None,
    ) -> contextlib.AbstractContextManager[Any]:
        """Inside, ``buffers`` are split along ``buffer_seq_dims`` over the ``cp`` mesh
        dimension and attention runs as ring attention; a no-op without context parallelism.

        Example:
            >>> with accelerator.maybe_context_parallel([ids, labels], [1, 1], {ids, labels}):  # doctest: +SKIP
            ...     loss = model(ids, labels=labels).loss
        """
        from accel.core.context_parallel import context_parallel_region

        return context_parallel_region(
            self.parallelism_config, self.torch_device_mesh, buffers, buffer_seq_dims,
            no_restore_buffers,
        )  # fmt: skip

    @property
    def split_batches(self) -> bool:
        """Whether each batch of a prepared dataloader is split across processes.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().split_batches
            False
        """
        return self.dataloader_config.split_batches

    @property
    def dispatch_batches(self) -> bool | None:
        """Whether process 0 reads batches and sends each process its part.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().dispatch_batches is None
            True
        """
        return self.dataloader_config.dispatch_batches

    @property
    def even_batches(self) -> bool:
        """Whether every process gets the same number of batches (wrapping around).

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().even_batches
            True
        """
        return self.dataloader_config.even_batches

    @even_batches.setter
    def even_batches(self, value: bool) -> None:
        self.dataloader_config.even_batches = value

    @property
    def use_seedable_sampler(self) -> bool:
        """Whether shuffling samplers are replaced by a seedable one.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().use_seedable_sampler
            False
        """
        return self.dataloader_config.use_seedable_sampler

    @property
    def non_blocking(self) -> bool:
        """Whether batches move to the device with ``non_blocking=True``.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().non_blocking
            False
        """
        return self.dataloader_config.non_blocking

    @property
    def use_stateful_dataloader(self) -> bool:
        """Whether dataloaders are made stateful (torchdata).

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().use_stateful_dataloader
            False
        """
        return self.dataloader_config.use_stateful_dataloader

    @property
    def project_dir(self) -> str | None:
        """The project folder (checkpoints, logs).

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator(project_dir="runs").project_dir
            'runs'
        """
        return self.project_configuration.project_dir

    @property
    def logging_dir(self) -> str | None:
        """Where trackers write logs.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator(project_dir="runs").logging_dir
            'runs'
        """
        return self.project_configuration.logging_dir

    @property
    def save_iteration(self) -> int:
        """The number of the next automatically named checkpoint.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().save_iteration
            0
        """
        return self.project_configuration.iteration

    @property
    def sync_gradients(self) -> bool:
        """Whether gradients are synchronized (and optimizers step) on this step.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().sync_gradients
            True
        """
        return self.gradient_state.sync_gradients

    @sync_gradients.setter
    def sync_gradients(self, value: bool) -> None:
        self.gradient_state.sync_gradients = value

    @property
    def gradient_accumulation_steps(self) -> int:
        """How many steps gradients accumulate over.

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator(gradient_accumulation_steps=4).gradient_accumulation_steps
            4
        """
        return self.gradient_state.num_steps

    @gradient_accumulation_steps.setter
    def gradient_accumulation_steps(self, steps: int) -> None:
        self.gradient_state.plugin_kwargs.update({"num_steps": steps})

    @property
    def optimizer_step_was_skipped(self) -> bool:
        """Whether any optimizer skipped its last step (fp16 overflow).

        Example:
            >>> from accel.core import Accelerator
            >>> Accelerator().optimizer_step_was_skipped
            False
        """
        return any(opt.step_was_skipped for opt in self._optimizers)
