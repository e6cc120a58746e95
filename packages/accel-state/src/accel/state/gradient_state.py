"""``GradientState``: whether gradients synchronize this step, and which dataloader is running."""

from __future__ import annotations

import weakref
from typing import Any

from accel.state import env


class GradientState:
    """Gradient-accumulation bookkeeping shared by every instance.

    ``sync_gradients`` is ``False`` on accumulation steps; ``end_of_dataloader`` and
    ``remainder`` describe the dataloader being iterated (weakly referenced, so finished
    dataloaders can be freed). The plugin's settings may change on later instantiations.

    Example:
        >>> from accel.state import GradientState
        >>> GradientState().sync_gradients
        True
    """

    _shared_state: dict[str, Any] = {}

    def __init__(self, gradient_accumulation_plugin: Any = None) -> None:
        self.__dict__ = self._shared_state
        if not self.initialized:
            self.sync_gradients = True
            self._dataloader_references_ref: list[Any] = [None]
            self.plugin_kwargs: dict[str, Any] = {}
            self._is_xla_gradients_synced = False
        if gradient_accumulation_plugin is not None:
            self.plugin_kwargs = gradient_accumulation_plugin.to_kwargs()

    @classmethod
    def _reset_state(cls) -> None:
        """Forget the shared state (Accelerate's spelling; prefer :func:`accel.state.reset_state`).

        Example:
            >>> GradientState._reset_state()
        """
        cls._shared_state.clear()

    @property
    def initialized(self) -> bool:
        """Whether the shared state has been set up.

        Example:
            >>> GradientState().initialized
            True
        """
        return self._shared_state != {}

    @property
    def num_steps(self) -> int:
        """How many steps gradients accumulate over.

        Example:
            >>> GradientState().num_steps
            1
        """
        return self.plugin_kwargs.get("num_steps", 1)

    @property
    def adjust_scheduler(self) -> bool:
        """Whether the scheduler steps are adjusted for accumulation.

        Example:
            >>> GradientState().adjust_scheduler
            False
        """
        return self.plugin_kwargs.get("adjust_scheduler", False)

    @property
    def sync_with_dataloader(self) -> bool:
        """Whether gradients are forced to sync at the end of each dataloader pass.

        Example:
            >>> GradientState().sync_with_dataloader
            True
        """
        return self.plugin_kwargs.get("sync_with_dataloader", True)

    @property
    def dataloader_references(self) -> list[Any]:
        """The dataloaders being iterated, innermost last (``None`` at the bottom).

        Example:
            >>> GradientState().dataloader_references
            [None]
        """
        return [ref() if ref is not None else None for ref in self._dataloader_references_ref]

    @dataloader_references.setter
    def dataloader_references(self, references: list[Any]) -> None:
        self._dataloader_references_ref = [
            weakref.ref(loader) if loader is not None else None for loader in references
        ]

    @property
    def active_dataloader(self) -> Any:
        """The dataloader being iterated now, or ``None``.

        Example:
            >>> GradientState().active_dataloader is None
            True
        """
        return self.dataloader_references[-1]

    @property
    def in_dataloader(self) -> bool:
        """Whether a prepared dataloader is being iterated.

        Example:
            >>> GradientState().in_dataloader
            False
        """
        return self.active_dataloader is not None

    @property
    def end_of_dataloader(self) -> bool:
        """Whether the active dataloader is on its last batch.

        Example:
            >>> GradientState().end_of_dataloader
            False
        """
        return self.in_dataloader and bool(self.active_dataloader.end_of_dataloader)

    @property
    def remainder(self) -> int:
        """Genuine samples in the active dataloader's last, incomplete global batch (-1 outside one).

        ``gather_for_metrics`` keeps this many samples of the last gathered batch and drops
        the ones repeated to even it out; 0 means the last batch was complete.

        Example:
            >>> GradientState().remainder
            -1
        """
        if not self.in_dataloader:
            return -1
        return self.active_dataloader.remainder

    @property
    def is_xla_gradients_synced(self) -> bool:
        """Whether XLA gradients were already reduced this step (always true under FSDP).

        Example:
            >>> GradientState().is_xla_gradients_synced
            False
        """
        return env.read_flag(env.USE_FSDP) or self._is_xla_gradients_synced

    @is_xla_gradients_synced.setter
    def is_xla_gradients_synced(self, synced: bool) -> None:
        self._is_xla_gradients_synced = synced

    def add_dataloader(self, dataloader: Any) -> None:
        """Make ``dataloader`` the active one (a prepared dataloader calls this as a pass starts).

        Example:
            >>> class Loader:
            ...     end_of_dataloader, remainder = False, -1
            >>> loader = Loader()
            >>> GradientState().add_dataloader(loader)
            >>> GradientState().active_dataloader is loader
            True
            >>> GradientState().remove_dataloader(loader)
        """
        self.dataloader_references = [*self.dataloader_references, dataloader]

    def remove_dataloader(self, dataloader: Any) -> None:
        """Forget ``dataloader``; the one it interrupted, if any, becomes active again.

        Example:
            >>> GradientState().remove_dataloader(object())
            >>> GradientState().active_dataloader is None
            True
        """
        self.dataloader_references = [d for d in self.dataloader_references if d is not dataloader]

    # Accelerate's private spellings, which its users (transformers' Trainer) call.
    def _set_sync_gradients(self, sync_gradients: bool) -> None:
        self.sync_gradients = sync_gradients

    _add_dataloader = add_dataloader
    _remove_dataloader = remove_dataloader

    def __repr__(self) -> str:
        return (
            f"Sync Gradients: {self.sync_gradients}\n"
            f"At end of current dataloader: {self.end_of_dataloader}\n"
            f"Extra samples added: {self.remainder}\n"
            f"Gradient accumulation plugin: {self.plugin_kwargs}\n"
        )
