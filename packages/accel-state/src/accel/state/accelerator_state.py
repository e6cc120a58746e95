"""``AcceleratorState``: the process state plus what an ``Accelerator`` decided for training."""

from __future__ import annotations

import contextlib
from typing import Any

from accel.state import env
from accel.state.enums import DistributedType, PrecisionType
from accel.state.partial_state import PartialState

_MULTI_DEVICE_TYPES = {
    DistributedType.MULTI_CPU,
    DistributedType.MULTI_GPU,
    DistributedType.MULTI_NPU,
    DistributedType.MULTI_MLU,
    DistributedType.MULTI_SDAA,
    DistributedType.MULTI_MUSA,
    DistributedType.MULTI_XPU,
    DistributedType.MULTI_HPU,
    DistributedType.MULTI_NEURON,
}


def _check_precision(value: str, source: str) -> str:
    lowered = str(value).lower()
    if lowered not in PrecisionType:
        raise ValueError(
            f"{source}={value!r} is not a mixed-precision mode; expected one of "
            f"{', '.join(PrecisionType.list())}"
        )
    return lowered


class AcceleratorState:
    """Training-wide state shared by every instance; set up once by ``Accelerator``.

    Everything ``PartialState`` knows (device, ranks, process control) is available here too,
    plus ``mixed_precision``, the plugins, and a ``distributed_type`` that says ``FSDP`` or
    ``DEEPSPEED`` when one of those was asked for.

    Example:
        >>> from accel.state import AcceleratorState
        >>> state = AcceleratorState(mixed_precision="no", _from_accelerator=True)
        >>> state.mixed_precision
        'no'
    """

    _shared_state: dict[str, Any] = {}
    # one plugin, or a dict of named plugins (the active one has ``selected`` set), or None
    deepspeed_plugins: Any

    def __init__(
        self,
        mixed_precision: str | None = None,
        cpu: bool = False,
        dynamo_plugin: Any = None,
        deepspeed_plugin: Any = None,
        fsdp_plugin: Any = None,
        torch_tp_plugin: Any = None,
        megatron_lm_plugin: Any = None,
        parallelism_config: Any = None,
        _from_accelerator: bool = False,
        **kwargs: Any,
    ) -> None:
        self.__dict__ = self._shared_state
        cpu = cpu or env.read_flag(env.USE_CPU)
        partial = PartialState(cpu, **kwargs)
        if self.initialized:
            self._check_unchanged(mixed_precision, cpu)
            return
        if not _from_accelerator:
            raise ValueError(
                "AcceleratorState is set up by Accelerator(); create `accelerator = "
                "Accelerator()` before using AcceleratorState (or use PartialState, which needs "
                "no Accelerator)"
            )
        if mixed_precision is None:
            precision = env.read_choice(env.MIXED_PRECISION, PrecisionType.list(), "no")
        else:
            precision = _check_precision(mixed_precision, "mixed_precision")
        try:
            distributed_type = partial.distributed_type
            self.dynamo_plugin = dynamo_plugin
            self.torch_tp_plugin = torch_tp_plugin
            self.parallelism_config = parallelism_config
            self.megatron_lm_plugin = megatron_lm_plugin
            self.fsdp_plugin = None
            self.deepspeed_plugins = None
            self.device_mesh = None
            if deepspeed_plugin is not None or env.read_flag(env.USE_DEEPSPEED):
                distributed_type = DistributedType.DEEPSPEED
                self.deepspeed_plugins = deepspeed_plugin
                for plugin in self._all_deepspeed_plugins():
                    if hasattr(plugin, "set_mixed_precision"):
                        plugin.set_mixed_precision(precision)
                if isinstance(deepspeed_plugin, dict) and deepspeed_plugin:
                    self.select_deepspeed_plugin(next(iter(deepspeed_plugin)))
            elif distributed_type in _MULTI_DEVICE_TYPES and (
                fsdp_plugin is not None or env.read_flag(env.USE_FSDP)
            ):
                distributed_type = DistributedType.FSDP
                self.fsdp_plugin = fsdp_plugin
                if (
                    precision != "no"
                    and fsdp_plugin is not None
                    and hasattr(fsdp_plugin, "set_mixed_precision")
                ):
                    fsdp_plugin.set_mixed_precision(precision)
            self._mixed_precision = precision
            self.distributed_type = distributed_type
            partial.distributed_type = distributed_type
        except BaseException:
            # a failing plugin must not leave a half-set-up state behind
            self._shared_state.clear()
            raise

    def _check_unchanged(self, mixed_precision: str | None, cpu: bool) -> None:
        hint = "it was already set up; call accel.state.reset_state() first to start over"
        if cpu and self.device.type != "cpu":
            raise ValueError(
                f"AcceleratorState(cpu=True) conflicts with device {self.device}: {hint}"
            )
        if (
            mixed_precision is not None
            and self.distributed_type != DistributedType.DEEPSPEED
            and _check_precision(mixed_precision, "mixed_precision") != self._mixed_precision
        ):
            raise ValueError(
                f"AcceleratorState(mixed_precision={mixed_precision!r}) conflicts with "
                f"{self._mixed_precision!r}: {hint}"
            )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if not self._shared_state:
            raise AttributeError(
                f"`AcceleratorState` object has no attribute `{name}`. This happens if "
                "`AcceleratorState._reset_state()` (or accel.state.reset_state()) was called "
                "after this object was made: the shared state is gone, so create a new "
                "`Accelerator` and use it (objects made before the reset see the new state once "
                "it exists)"
            )
        return getattr(PartialState(), name)

    def __repr__(self) -> str:
        return f"{PartialState()!r}Mixed precision type: {self.mixed_precision}\n"

    @property
    def initialized(self) -> bool:
        """Whether an ``Accelerator`` has set this state up.

        Example:
            >>> AcceleratorState(_from_accelerator=True).initialized
            True
        """
        return self._shared_state != {}

    @classmethod
    def is_initialized(cls) -> bool:
        """Whether an ``Accelerator`` has set the state up, asked without creating an instance.

        ``AcceleratorState()`` itself refuses to run before an ``Accelerator`` exists, so code
        that only needs to know (launchers, ``zero3_init_context``) asks the class.

        Example:
            >>> from accel.state import reset_state
            >>> reset_state()
            >>> AcceleratorState.is_initialized()
            False
            >>> AcceleratorState(_from_accelerator=True).initialized
            True
            >>> AcceleratorState.is_initialized()
            True
        """
        return cls._shared_state != {}

    @classmethod
    def _reset_state(cls, reset_partial_state: bool = False) -> None:
        """Forget the shared state (Accelerate's spelling; prefer :func:`accel.state.reset_state`).

        Example:
            >>> AcceleratorState._reset_state(reset_partial_state=True)
        """
        cls._shared_state.clear()
        if reset_partial_state:
            PartialState._reset_state()

    @property
    def mixed_precision(self) -> str:
        """The mixed-precision mode; under DeepSpeed, read from its config.

        Under DeepSpeed before any ``DeepSpeedPlugin`` exists (``accel launch --use_deepspeed``
        with none passed to ``Accelerator``), this is the mode the ``Accelerator`` was given or
        read from the launcher, which the DeepSpeed strategy writes into the plugin it creates.

        Example:
            >>> AcceleratorState(_from_accelerator=True).mixed_precision
            'no'
        """
        if self.distributed_type == DistributedType.DEEPSPEED and self._mixed_precision != "fp8":
            config = getattr(self.deepspeed_plugin, "deepspeed_config", None) or {}
            for mode in ("fp16", "bf16"):
                if config.get(mode, {}).get("enabled", False) is True:
                    return mode
            return self._mixed_precision if not config else "no"
        return self._mixed_precision

    @property
    def use_distributed(self) -> bool:
        """Whether more than one process takes part.

        Example:
            >>> AcceleratorState(_from_accelerator=True).use_distributed
            False
        """
        return PartialState().num_processes > 1 and self.distributed_type != DistributedType.NO

    @property
    def is_fsdp2(self) -> bool:
        """Whether FSDP2 (``fully_shard``) is in use.

        Example:
            >>> AcceleratorState(_from_accelerator=True).is_fsdp2
            False
        """
        return self.distributed_type == DistributedType.FSDP and (
            getattr(self.fsdp_plugin, "fsdp_version", 2) == 2
        )

    @property
    def fork_launched(self) -> bool:
        """Whether the processes were forked by a notebook launcher.

        Example:
            >>> AcceleratorState(_from_accelerator=True).fork_launched
            False
        """
        return PartialState().fork_launched

    def _all_deepspeed_plugins(self) -> list[Any]:
        plugins = self.deepspeed_plugins
        if plugins is None:
            return []
        return list(plugins.values()) if isinstance(plugins, dict) else [plugins]

    @property
    def deepspeed_plugin(self) -> Any:
        """The active DeepSpeed plugin, or ``None``.

        Example:
            >>> AcceleratorState(_from_accelerator=True).deepspeed_plugin is None
            True
        """
        plugins = self.deepspeed_plugins
        if not isinstance(plugins, dict):
            return plugins
        for plugin in plugins.values():
            if getattr(plugin, "selected", False):
                return plugin
        return None

    def get_deepspeed_plugin(self, name: str) -> Any:
        """The DeepSpeed plugin registered under ``name``.

        Example:
            >>> state.get_deepspeed_plugin("student")  # doctest: +SKIP
        """
        plugins = self.deepspeed_plugins if isinstance(self.deepspeed_plugins, dict) else {}
        if name not in plugins:
            raise ValueError(
                f"no DeepSpeed plugin named {name!r}; known: {', '.join(map(repr, plugins)) or 'none'}"
            )
        return plugins[name]

    def select_deepspeed_plugin(self, name: str | None = None) -> None:
        """Make the plugin ``name`` the active one and deactivate the others.

        Example:
            >>> state.select_deepspeed_plugin("teacher")  # doctest: +SKIP
        """
        if name is None:
            known = self.deepspeed_plugins if isinstance(self.deepspeed_plugins, dict) else {}
            raise ValueError(
                "select_deepspeed_plugin needs the name of a DeepSpeed plugin; known: "
                f"{', '.join(map(repr, known)) or 'none'}"
            )
        chosen = self.get_deepspeed_plugin(name)
        for plugin in self.deepspeed_plugins.values():
            plugin.selected = plugin is chosen
        if hasattr(chosen, "select"):
            chosen.select(_from_accelerator_state=True)

    def destroy_process_group(self, group: Any = None) -> None:
        """Destroy ``group`` (default: the default process group); see ``PartialState``.

        Example:
            >>> AcceleratorState(_from_accelerator=True).destroy_process_group()
        """
        PartialState().destroy_process_group(group)

    def wait_for_everyone(self) -> None:
        """Block until every process reaches this call.

        Example:
            >>> AcceleratorState(_from_accelerator=True).wait_for_everyone()
        """
        PartialState().wait_for_everyone()

    def split_between_processes(
        self, inputs: Any, apply_padding: bool = False
    ) -> contextlib.AbstractContextManager[Any]:
        """This process's share of ``inputs``; see ``PartialState.split_between_processes``.

        Example:
            >>> with AcceleratorState(_from_accelerator=True).split_between_processes([1, 2]) as s:
            ...     s
            [1, 2]
        """
        return PartialState().split_between_processes(inputs, apply_padding=apply_padding)

    def main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on the main process first, then on the others.

        Example:
            >>> with AcceleratorState(_from_accelerator=True).main_process_first():
            ...     pass
        """
        return PartialState().main_process_first()

    def local_main_process_first(self) -> contextlib.AbstractContextManager[None]:
        """Run a block on each machine's first process first, then on its others.

        Example:
            >>> with AcceleratorState(_from_accelerator=True).local_main_process_first():
            ...     pass
        """
        return PartialState().local_main_process_first()

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on each machine's first process only.

        Example:
            >>> AcceleratorState(_from_accelerator=True).print("hi")
            hi
        """
        PartialState().print(*args, **kwargs)
