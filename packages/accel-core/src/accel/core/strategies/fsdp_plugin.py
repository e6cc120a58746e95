"""FSDP2's configuration, ``FullyShardedDataParallelPlugin``: its fields, read from the
arguments or else from the ``FSDP_*`` (and ``ACCEL_FSDP_*``) environment variables the
launcher writes, and the wrap policy it implies. Each field is parsed and validated by
:mod:`accel.core.strategies.fsdp_options`.

The strategy that uses it is :mod:`accel.core.strategies.fsdp`.

Example:
    >>> FullyShardedDataParallelPlugin(reshard_after_forward=False).reshard_after_forward
    False
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from accel.core.kwargs import ARGUMENT, _invalid
from accel.core.strategies.fsdp_options import (
    AUTO_WRAP_POLICIES,
    DEFAULT_MIN_NUM_PARAMS,
    FSDP1_ONLY,
    FSDP_MIXED_PRECISION,
    OWNER,
    parse_auto_wrap_policy,
    parse_class_names,
    parse_cpu_offload,
    parse_flag,
    parse_fsdp_version,
    parse_ignored_modules,
    parse_min_num_params,
    parse_mixed_precision_policy,
    parse_reshard_after_forward,
    parse_state_dict_type,
)
from accel.state.options import fsdp_env, lookup
from accel.state.process_logging import warn_on_main_process

if TYPE_CHECKING:
    from torch.distributed.fsdp import OffloadPolicy

__all__ = ["FullyShardedDataParallelPlugin"]

_Class = TypeVar("_Class", bound=type)


def _track_explicit(cls: _Class) -> _Class:
    """Record which fields the caller passed, so that only the others are read from the env."""
    generated = cls.__init__
    names = [f.name for f in dataclasses.fields(cls) if f.init]

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        legacy = sorted(set(kwargs) & set(FSDP1_ONLY))
        if legacy:
            hints = "; ".join(f"{k}: {FSDP1_ONLY[k]}" for k in legacy)
            raise TypeError(
                f"{cls.__name__} got FSDP1-only argument(s) {', '.join(legacy)}; accel implements "
                f"FSDP2 only. {hints}"
            )
        object.__setattr__(self, "_explicit", set(names[: len(args)]) | set(kwargs))
        generated(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def _class_names(module: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in module.modules()}


@_track_explicit
@dataclasses.dataclass
class FullyShardedDataParallelPlugin:
    """Configuration of FSDP2 (``torch.distributed.fsdp.fully_shard``) for ``prepare``.

    accel implements FSDP2 only: ``fsdp_version=1`` raises a ``ValueError`` explaining how to
    migrate. Fields not passed explicitly are read from the variables Accelerate's launcher
    writes (``FSDP_VERSION``, ``FSDP_RESHARD_AFTER_FORWARD``, ``FSDP_OFFLOAD_PARAMS``,
    ``FSDP_AUTO_WRAP_POLICY``, ``FSDP_TRANSFORMER_CLS_TO_WRAP``, ``FSDP_MIN_NUM_PARAMS``,
    ``FSDP_STATE_DICT_TYPE``, ``FSDP_ACTIVATION_CHECKPOINTING``,
    ``FSDP_CPU_RAM_EFFICIENT_LOADING``, ``FSDP_IGNORED_MODULES``), each also accepted with the
    prefix ``ACCEL_`` (which wins). An explicit argument always wins over the environment.

    - ``reshard_after_forward``: ``True``/``False``, or an int (the world size to reshard to);
      Accelerate's ``"FULL_SHARD"``/``"SHARD_GRAD_OP"`` map to ``True``/``False``.
    - ``cpu_offload``: ``bool`` (or a torch ``OffloadPolicy``; see :meth:`offload_policy`).
    - ``auto_wrap_policy``: ``"transformer_based_wrap"``, ``"size_based_wrap"``, ``"no_wrap"``
      (any case; ``"no_wrap"`` is stored as ``None``) or a callable ``module -> bool``.
    - ``mixed_precision_policy``: ``None``, a ``MixedPrecisionPolicy``, a dict of its fields, or
      ``"fp16"``/``"bf16"``/``"fp32"``.
    - ``state_dict_type``: ``"FULL_STATE_DICT"`` or ``"SHARDED_STATE_DICT"`` (also ``1``/``3``
      or torch's ``StateDictType``).

    Example:
        >>> plugin = FullyShardedDataParallelPlugin(
        ...     auto_wrap_policy="transformer_based_wrap",
        ...     transformer_cls_names_to_wrap=["Block"],
        ...     mixed_precision_policy="bf16",
        ... )
        >>> plugin.mixed_precision_policy.param_dtype
        torch.bfloat16
    """

    fsdp_version: int = 2
    reshard_after_forward: bool | int = True
    cpu_offload: bool | OffloadPolicy = False
    auto_wrap_policy: str | Callable[..., Any] | None = None
    transformer_cls_names_to_wrap: list[str] | None = None
    min_num_params: int | None = None
    mixed_precision_policy: Any = None
    state_dict_type: str = "FULL_STATE_DICT"
    activation_checkpointing: bool = False
    cpu_ram_efficient_loading: bool = False
    ignored_modules: Iterable[torch.nn.Module] | str | None = None

    def _value(self, name: str, env: str) -> tuple[Any, str]:
        """Field value and its source: the argument if passed, else the env var if set."""
        if name in getattr(self, "_explicit", ()):
            return getattr(self, name), ARGUMENT
        raw, source = lookup(fsdp_env(env))  # ACCEL_FSDP_<env>, else FSDP_<env>
        if raw is None or source is None:
            return getattr(self, name), ARGUMENT
        return raw, source

    def __post_init__(self) -> None:
        self.fsdp_version = parse_fsdp_version(*self._value("fsdp_version", "VERSION"))
        self.reshard_after_forward = parse_reshard_after_forward(
            *self._value("reshard_after_forward", "RESHARD_AFTER_FORWARD")
        )
        self.cpu_offload = parse_cpu_offload(*self._value("cpu_offload", "OFFLOAD_PARAMS"))
        self.auto_wrap_policy = parse_auto_wrap_policy(
            *self._value("auto_wrap_policy", "AUTO_WRAP_POLICY")
        )

        if self.auto_wrap_policy == "transformer_based_wrap":
            value, source = self._value("transformer_cls_names_to_wrap", "TRANSFORMER_CLS_TO_WRAP")
        else:
            value, source = self.transformer_cls_names_to_wrap, ARGUMENT
            if value is not None:
                warn_on_main_process(
                    f"{OWNER}.transformer_cls_names_to_wrap is only used with "
                    f"auto_wrap_policy='transformer_based_wrap' (got {self.auto_wrap_policy!r}); "
                    "it is ignored",
                    stacklevel=3,
                )
        self.transformer_cls_names_to_wrap = parse_class_names(value, source)

        if self.auto_wrap_policy == "size_based_wrap":
            value, source = self._value("min_num_params", "MIN_NUM_PARAMS")
        else:
            value, source = self.min_num_params, ARGUMENT
        self.min_num_params = parse_min_num_params(value, source)

        self.mixed_precision_policy = parse_mixed_precision_policy(self.mixed_precision_policy)
        self.state_dict_type = parse_state_dict_type(
            *self._value("state_dict_type", "STATE_DICT_TYPE")
        )
        self.activation_checkpointing = parse_flag(
            "activation_checkpointing",
            *self._value("activation_checkpointing", "ACTIVATION_CHECKPOINTING"),
        )
        self.cpu_ram_efficient_loading = parse_flag(
            "cpu_ram_efficient_loading",
            *self._value("cpu_ram_efficient_loading", "CPU_RAM_EFFICIENT_LOADING"),
        )
        self.ignored_modules = parse_ignored_modules(
            *self._value("ignored_modules", "IGNORED_MODULES")
        )

    # -- public helpers -------------------------------------------------------------------

    def set_mixed_precision(
        self, mixed_precision: str, buffer_autocast: bool = False, override: bool = False
    ) -> None:
        """Fill ``mixed_precision_policy`` from the Accelerator's ``mixed_precision``.

        Only when the policy is still ``None`` (or ``override=True``): ``"bf16"``/``"fp16"``
        (and ``"fp8"``, which shards in bf16) keep parameters and reduce gradients in that
        dtype; ``"fp32"`` in float32; ``"no"`` leaves the policy ``None``. ``buffer_autocast``
        is accepted for Accelerate compatibility and has no effect with FSDP2.

        Example:
            >>> plugin = FullyShardedDataParallelPlugin()
            >>> plugin.set_mixed_precision("bf16")
            >>> plugin.mixed_precision_policy.reduce_dtype
            torch.bfloat16
        """
        from torch.distributed.fsdp import MixedPrecisionPolicy

        valid = ["no", *FSDP_MIXED_PRECISION]
        key = str(mixed_precision).lower() if isinstance(mixed_precision, str) else None
        if key not in valid:
            raise _invalid(OWNER, "set_mixed_precision(mixed_precision)", mixed_precision, valid)
        if key == "no" or not (override or self.mixed_precision_policy is None):
            return
        dtype = FSDP_MIXED_PRECISION[key]
        self.mixed_precision_policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype)

    def offload_policy(self) -> Any:
        """The torch ``OffloadPolicy`` for ``fully_shard(offload_policy=...)``.

        Example:
            >>> type(FullyShardedDataParallelPlugin(cpu_offload=True).offload_policy()).__name__
            'CPUOffloadPolicy'
        """
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

        if isinstance(self.cpu_offload, OffloadPolicy):
            return self.cpu_offload
        if not self.cpu_offload:
            return OffloadPolicy()
        # Pinned host memory needs a CUDA driver; a CPU-only job offloads unpinned.
        return CPUOffloadPolicy(pin_memory=torch.cuda.is_available())

    def _names_to_wrap(self, model: torch.nn.Module | None) -> list[str]:
        if self.transformer_cls_names_to_wrap is not None:
            return list(self.transformer_cls_names_to_wrap)
        if model is None:
            raise ValueError(
                f"{OWNER}.transformer_cls_names_to_wrap=None: pass model= so that the "
                "model's _no_split_modules can be used, or set transformer_cls_names_to_wrap"
            )
        return list(getattr(model, "_no_split_modules", None) or [])

    def check_wrap_classes(self, model: torch.nn.Module) -> list[str]:
        """Check the class names to wrap against ``model`` and return them.

        With ``auto_wrap_policy="transformer_based_wrap"`` the names are
        ``transformer_cls_names_to_wrap``, or the model's ``_no_split_modules`` when none were
        given; a name that matches no submodule's class raises ``ValueError`` listing the
        classes the model does contain. Other policies return ``[]``.

        Example:
            >>> plugin = FullyShardedDataParallelPlugin(
            ...     auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["Linear"]
            ... )
            >>> plugin.check_wrap_classes(torch.nn.Sequential(torch.nn.Linear(2, 2)))
            ['Linear']
        """
        if self.auto_wrap_policy != "transformer_based_wrap":
            return []
        names = self._names_to_wrap(model)
        present = _class_names(model)
        unknown = [n for n in names if n not in present]
        if unknown:
            origin = (
                "transformer_cls_names_to_wrap"
                if self.transformer_cls_names_to_wrap is not None
                else "the model's _no_split_modules"
            )
            raise ValueError(
                f"{OWNER}: class name(s) {', '.join(map(repr, unknown))} from {origin} "
                f"are not in the model {type(model).__name__}; its module classes are "
                f"{', '.join(sorted(present))}"
            )
        if not names:
            warn_on_main_process(
                f"{OWNER}: auto_wrap_policy='transformer_based_wrap' has no class names "
                f"(no transformer_cls_names_to_wrap and {type(model).__name__} has no "
                "_no_split_modules); only the root module will be sharded",
                stacklevel=2,
            )
        return names

    def wrap_policy_matches(
        self, module: torch.nn.Module, model: torch.nn.Module | None = None
    ) -> bool:
        """Whether ``module`` should get its own ``fully_shard`` under the chosen policy.

        - ``"transformer_based_wrap"``: its class (or a base class) is named in
          ``transformer_cls_names_to_wrap``, or in ``model._no_split_modules`` when no names
          were given (then ``model`` is required).
        - ``"size_based_wrap"``: it holds at least ``min_num_params`` parameters (default
          ``1e8``) and at least one.
        - a callable: its answer, called as ``policy(module)``; torch's FSDP1-style policies
          taking ``(module, recurse, nonwrapped_numel)`` work too.
        - ``None`` (no_wrap): never.

        A module wrapped by activation checkpointing is judged by the module it wraps.

        Example:
            >>> plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="size_based_wrap", min_num_params=10)
            >>> plugin.wrap_policy_matches(torch.nn.Linear(4, 4))
            True
        """
        policy = self.auto_wrap_policy
        if policy is None:
            return False
        inner = getattr(module, "_checkpoint_wrapped_module", module)
        if isinstance(policy, str):
            if policy == "transformer_based_wrap":
                names = set(self._names_to_wrap(model))
                return any(cls.__name__ in names for cls in type(inner).__mro__)
            if policy == "size_based_wrap":
                threshold = (
                    DEFAULT_MIN_NUM_PARAMS if self.min_num_params is None else self.min_num_params
                )
                count = sum(p.numel() for p in inner.parameters())
                return count > 0 and count >= threshold
            valid = [p for p in AUTO_WRAP_POLICIES if p != "no_wrap"]
            raise _invalid(OWNER, "auto_wrap_policy", policy, f"{valid}, a callable or None")
        try:
            parameters = inspect.signature(policy).parameters
        except (TypeError, ValueError):
            parameters = {}
        if "recurse" in parameters and "nonwrapped_numel" in parameters:
            count = sum(p.numel() for p in inner.parameters())
            return bool(policy(module=inner, recurse=False, nonwrapped_numel=count))
        return bool(policy(inner))
