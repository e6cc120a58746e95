"""The ``Accelerator``'s saving and checkpoint methods: ``save``, ``save_model``,
``save_state``, ``load_state``, ``wait_for_checkpoint`` and the checkpoint registrations.
The work is done by :mod:`accel.core.saving`, :mod:`accel.core.checkpoint` and the strategy's
checkpoint hooks, which get an explicit :class:`~accel.core.checkpoint.context.CheckpointContext`.

Example:
    >>> from accel.core import Accelerator
    >>> issubclass(Accelerator, CheckpointingMixin)
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from accel.core.accelerator_parts import AcceleratorParts
from accel.core.checkpoint import hooks as checkpoint_hooks
from accel.core.checkpoint import state as checkpoint_state
from accel.core.checkpoint.context import CheckpointContext


class CheckpointingMixin(AcceleratorParts):
    """Saving and checkpoints, mixed into :class:`~accel.core.Accelerator`.

    Example:
        >>> accelerator.save_state("ckpt")  # doctest: +SKIP
    """

    # -- saving --------------------------------------------------------------------------

    def save(self, obj: Any, f: Any, safe_serialization: bool = False) -> None:
        """Save ``obj`` to ``f`` from the main process only (atomically); use for ``torch.save``.

        With ``ProjectConfiguration(save_on_each_node=True)``, once per node instead.

        Example:
            >>> accelerator.save({"step": 10}, "extra.pt")  # doctest: +SKIP
        """
        from accel.core.saving import save

        save(
            obj,
            f,
            save_on_each_node=self.project_configuration.save_on_each_node,
            safe_serialization=safe_serialization,
        )

    def save_model(
        self,
        model: torch.nn.Module,
        save_directory: str | os.PathLike[str],
        max_shard_size: int | str = "10GB",
        safe_serialization: bool = True,
    ) -> None:
        """Write the model's weights as (sharded) safetensors, or ``.bin`` files, with an index.

        Call on every process (the state dict is gathered first); the main process writes.

        Example:
            >>> accelerator.save_model(model, "out", max_shard_size="1GB")  # doctest: +SKIP
        """
        from accel.core.saving import save_model

        save_model(self, model, save_directory, max_shard_size, safe_serialization)

    # -- checkpoints (logic in accel.core.checkpoint) ------------------------------------

    def _checkpoint_context(self) -> CheckpointContext:
        """What the strategy's checkpoint hooks save or restore, passed to them explicitly."""
        config = self.project_configuration
        return CheckpointContext(
            models=self._models,
            optimizers=self._optimizers,
            schedulers=self._schedulers,
            dataloaders=self._dataloaders,
            custom_objects=self._custom_objects,
            scaler=self.scaler,
            step=self.step,
            process_index=self.process_index,
            num_processes=self.num_processes,
            writes_shared_files=(
                self.is_local_main_process if config.save_on_each_node else self.is_main_process
            ),
            device=self.device,
            unwrap_model=self.unwrap_model,
            accumulation_steps=self.gradient_state.num_steps,
            save_pre_hooks=list(self._save_model_state_pre_hook.values()),
            load_pre_hooks=list(self._load_model_state_pre_hook.values()),
        )

    def save_state(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        safe_serialization: bool = True,
        async_save: bool = False,
        **save_model_func_kwargs: Any,
    ) -> str:
        """Save models, optimizers, schedulers, scaler, RNG states and registered objects.

        Writes Accelerate's folder layout into a hidden temporary folder and renames it into
        place once every process is done, so a crash never leaves a half checkpoint. With
        ``ProjectConfiguration(automatic_checkpoint_naming=True)`` the folder is
        ``project_dir/checkpoints/checkpoint_<iteration>`` and at most ``total_limit``
        complete checkpoints are kept. Returns the folder.

        With ``async_save=True`` the call returns once the state is copied to CPU memory
        (kept and reused for the next save); the files are written in the background and the
        folder appears when they are on disk. :meth:`wait_for_checkpoint` waits for that (so
        do the next ``save_state``, ``load_state``, ``end_training`` and interpreter exit).

        Extra keywords go to the strategy's own model save function: under DeepSpeed,
        ``engine.save_checkpoint`` (``client_state``, ``save_latest``,
        ``exclude_frozen_parameters``). Other strategies take none and refuse them with a
        ``TypeError`` before writing anything (Accelerate ignores them silently).

        Example:
            >>> accelerator.save_state("ckpt")  # doctest: +SKIP
            '/abs/path/ckpt'
            >>> accelerator.save_state("ckpt2", async_save=True)  # doctest: +SKIP
        """
        self.wait_for_checkpoint()  # one save in flight at most, in order
        checkpoint_state.check_supported(self.distributed_type, "save_state")
        return checkpoint_state.save_state(
            self.strategy,
            self._checkpoint_context(),
            self.project_configuration,
            self._checkpoint_writer,
            output_dir,
            safe_serialization,
            async_save=async_save,
            **save_model_func_kwargs,
        )

    def wait_for_checkpoint(self) -> None:
        """Wait until the ``save_state(async_save=True)`` in flight is on disk and published.

        Raises :class:`~accel.core.checkpoint.async_writer.CheckpointWriteError` if writing it failed
        (the previous complete checkpoint is left intact). Does nothing when no save is in
        flight.

        Example:
            >>> accelerator.save_state(async_save=True)  # doctest: +SKIP
            >>> accelerator.wait_for_checkpoint()  # doctest: +SKIP
        """
        self._checkpoint_writer.wait()

    def load_state(
        self,
        input_dir: str | os.PathLike[str] | None = None,
        load_kwargs: dict[str, Any] | None = None,
        **load_model_func_kwargs: Any,
    ) -> str:
        """Restore what :meth:`save_state` saved (also folders written by Accelerate).

        Without ``input_dir`` (automatic checkpoint naming), loads the newest complete
        checkpoint. Files are loaded without running code (safetensors, or
        ``torch.load(weights_only=True)``). Returns the folder loaded.

        Example:
            >>> accelerator.load_state("ckpt")  # doctest: +SKIP
            '/abs/path/ckpt'
        """
        self.wait_for_checkpoint()  # the save in flight may be the one to load
        checkpoint_state.check_supported(self.distributed_type, "load_state")
        context = self._checkpoint_context()
        folder = checkpoint_state.load_state(
            self.strategy,
            context,
            self.project_configuration,
            input_dir,
            load_kwargs,
            **load_model_func_kwargs,
        )
        self.step = context.step
        return folder

    def register_for_checkpointing(self, *objects: Any) -> None:
        """Have :meth:`save_state`/:meth:`load_state` include objects with ``state_dict``.

        Example:
            >>> accelerator.register_for_checkpointing(ema)  # doctest: +SKIP
        """
        checkpoint_hooks.check_checkpointable(objects)
        self._custom_objects.extend(objects)

    def register_save_state_pre_hook(self, hook: Callable[..., None]) -> Any:
        """Run ``hook(models, weights, output_dir)`` before :meth:`save_state` writes.

        ``output_dir`` is the temporary folder being written; remove a model's entry from
        ``weights`` to skip saving it. Returns a handle with ``.remove()``.

        Example:
            >>> handle = accelerator.register_save_state_pre_hook(my_hook)  # doctest: +SKIP
        """
        return checkpoint_hooks.add_hook(self._save_model_state_pre_hook, hook)

    def register_load_state_pre_hook(self, hook: Callable[..., None]) -> Any:
        """Run ``hook(models, input_dir)`` before :meth:`load_state` loads.

        Remove a model from ``models`` to load it yourself. Returns a handle with ``.remove()``.

        Example:
            >>> handle = accelerator.register_load_state_pre_hook(my_hook)  # doctest: +SKIP
        """
        return checkpoint_hooks.add_hook(self._load_model_state_pre_hook, hook)
