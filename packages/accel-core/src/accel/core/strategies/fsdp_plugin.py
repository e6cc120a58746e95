"""FSDP2's configuration, ``FullyShardedDataParallelPlugin``: its fields, the ``FSDP_*``
(and ``ACCEL_FSDP_*``) environment variables the launcher writes, and their validation.

The strategy that uses it is :mod:`accel.core.strategies.fsdp`.

Example:
    >>> FullyShardedDataParallelPlugin(reshard_after_forward=False).reshard_after_forward
    False
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import torch

from accel.core.kwargs import (
    ARGUMENT,
    _describe,
    _invalid,
    check_int,
    env_truth,
)
from accel.state.env import str_to_bool
from accel.state.options import AUTO_WRAP_POLICIES as _AUTO_WRAP_POLICIES
from accel.state.options import STATE_DICT_TYPES, fsdp_env, lookup
from accel.state.process_logging import warn_on_main_process

__all__ = ["FullyShardedDataParallelPlugin"]


# ---------------------------------------------------------------------------------------------
# FSDP2

AUTO_WRAP_POLICIES = tuple(policy.lower() for policy in _AUTO_WRAP_POLICIES)
FSDP_MIXED_PRECISION = {
    "fp8": torch.bfloat16,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
}
DEFAULT_MIN_NUM_PARAMS = 10**8
_DTYPE_NAMES = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}
# Accelerate's FSDP1-only arguments, and what to use instead with FSDP2.
_FSDP1_ONLY = {
    "sharding_strategy": "use reshard_after_forward (FULL_SHARD -> True, SHARD_GRAD_OP -> False)",
    "backward_prefetch": "FSDP2 prefetches on its own; drop it",
    "state_dict_config": "drop it; state_dict_type selects the layout",
    "optim_state_dict_config": "drop it; state_dict_type selects the layout",
    "limit_all_gathers": "FSDP2 does not need it; drop it",
    "use_orig_params": "FSDP2 always uses the original parameters; drop it",
    "param_init_fn": "FSDP2 does not use it; drop it",
    "sync_module_states": "FSDP2 does not need it; use cpu_ram_efficient_loading",
    "forward_prefetch": "FSDP2 does not implement it; drop it",
}
_FSDP1_MIGRATION = (
    "accel implements FSDP2 only (torch.distributed.fsdp.fully_shard). To migrate: set "
    "fsdp_version=2 (or fsdp_version: 2 in the config file / FSDP_VERSION=2), replace "
    "sharding_strategy by reshard_after_forward (FULL_SHARD -> True, SHARD_GRAD_OP -> False), and "
    "drop FSDP1-only options (backward_prefetch, forward_prefetch, use_orig_params, "
    "sync_module_states, limit_all_gathers)"
)


def _track_explicit(cls: type) -> type:
    """Record which fields the caller passed, so that only the others are read from the env."""
    generated = cls.__init__
    names = [f.name for f in dataclasses.fields(cls) if f.init]

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        legacy = sorted(set(kwargs) & set(_FSDP1_ONLY))
        if legacy:
            hints = "; ".join(f"{k}: {_FSDP1_ONLY[k]}" for k in legacy)
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
    cpu_offload: bool = False
    auto_wrap_policy: str | Callable[[torch.nn.Module], bool] | None = None
    transformer_cls_names_to_wrap: list[str] | None = None
    min_num_params: int | None = None
    mixed_precision_policy: Any = None
    state_dict_type: str = "FULL_STATE_DICT"
    activation_checkpointing: bool = False
    cpu_ram_efficient_loading: bool = False
    ignored_modules: Iterable[torch.nn.Module] | str | None = None

    _OWNER = "FullyShardedDataParallelPlugin"

    def _value(self, name: str, env: str) -> tuple[Any, str]:
        """Field value and its source: the argument if passed, else the env var if set."""
        if name in getattr(self, "_explicit", ()):
            return getattr(self, name), ARGUMENT
        raw, source = lookup(fsdp_env(env))  # ACCEL_FSDP_<env>, else FSDP_<env>
        if raw is None or source is None:
            return getattr(self, name), ARGUMENT
        return raw, source

    def __post_init__(self) -> None:
        owner = self._OWNER

        value, source = self._value("fsdp_version", "VERSION")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2):
            raise _invalid(owner, "fsdp_version", value, "2 (accel implements FSDP2 only)", source)
        if value == 1:
            origin = "argument" if source == ARGUMENT else f"environment variable {source}"
            raise ValueError(
                f"{owner}.fsdp_version=1 (from {origin}) is not supported; {_FSDP1_MIGRATION}"
            )
        self.fsdp_version = 2

        value, source = self._value("reshard_after_forward", "RESHARD_AFTER_FORWARD")
        self.reshard_after_forward = self._parse_reshard(value, source)

        value, source = self._value("cpu_offload", "OFFLOAD_PARAMS")
        if isinstance(value, str) and source != ARGUMENT:
            value = env_truth(owner, "cpu_offload", value, source)
        from torch.distributed.fsdp import OffloadPolicy

        if not isinstance(value, (bool, OffloadPolicy)):
            raise _invalid(
                owner,
                "cpu_offload",
                value,
                "True, False or a torch OffloadPolicy",
                source,
                TypeError,
            )
        self.cpu_offload = value

        value, source = self._value("auto_wrap_policy", "AUTO_WRAP_POLICY")
        if isinstance(value, str):
            if value.lower() not in AUTO_WRAP_POLICIES:
                raise _invalid(owner, "auto_wrap_policy", value, AUTO_WRAP_POLICIES, source)
            value = None if value.lower() == "no_wrap" else value.lower()
        elif value is not None and not callable(value):
            raise _invalid(
                owner,
                "auto_wrap_policy",
                value,
                f"{_describe(AUTO_WRAP_POLICIES)}, a callable or None",
                source,
                TypeError,
            )
        self.auto_wrap_policy = value

        if self.auto_wrap_policy == "transformer_based_wrap":
            value, source = self._value("transformer_cls_names_to_wrap", "TRANSFORMER_CLS_TO_WRAP")
        else:
            value, source = self.transformer_cls_names_to_wrap, ARGUMENT
            if value is not None:
                warn_on_main_process(
                    f"{owner}.transformer_cls_names_to_wrap is only used with "
                    f"auto_wrap_policy='transformer_based_wrap' (got {self.auto_wrap_policy!r}); "
                    "it is ignored",
                    stacklevel=3,
                )
        self.transformer_cls_names_to_wrap = self._parse_names(value, source)

        if self.auto_wrap_policy == "size_based_wrap":
            value, source = self._value("min_num_params", "MIN_NUM_PARAMS")
        else:
            value, source = self.min_num_params, ARGUMENT
        if isinstance(value, str) and source != ARGUMENT:
            try:
                value = int(value)
            except ValueError:
                raise _invalid(owner, "min_num_params", value, "an integer >= 0", source) from None
        check_int(owner, "min_num_params", value, 0, optional=True, source=source)
        self.min_num_params = value

        self.mixed_precision_policy = self._parse_mixed_precision(self.mixed_precision_policy)

        value, source = self._value("state_dict_type", "STATE_DICT_TYPE")
        self.state_dict_type = self._parse_state_dict_type(value, source)

        for name, env in (
            ("activation_checkpointing", "ACTIVATION_CHECKPOINTING"),
            ("cpu_ram_efficient_loading", "CPU_RAM_EFFICIENT_LOADING"),
        ):
            value, source = self._value(name, env)
            if isinstance(value, str) and source != ARGUMENT:
                value = env_truth(owner, name, value, source)
            if not isinstance(value, bool):
                raise _invalid(owner, name, value, "True or False", source, TypeError)
            setattr(self, name, value)

        value, source = self._value("ignored_modules", "IGNORED_MODULES")
        self.ignored_modules = self._parse_ignored(value, source)

    # -- parsing helpers ------------------------------------------------------------------

    def _parse_reshard(self, value: Any, source: str) -> bool | int:
        owner = self._OWNER
        valid = "True, False, an integer >= 2 (world size to reshard to), 'FULL_SHARD' or 'SHARD_GRAD_OP'"
        if isinstance(value, str):
            text = value.strip()
            if text.upper() == "FULL_SHARD":
                return True
            if text.upper() == "SHARD_GRAD_OP":
                return False
            if text.isdigit() and int(text) >= 2:
                return int(text)
            try:
                return str_to_bool(text, source)
            except ValueError:
                raise _invalid(owner, "reshard_after_forward", value, valid, source) from None
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            if value < 2:
                raise _invalid(owner, "reshard_after_forward", value, valid, source)
            return value
        raise _invalid(owner, "reshard_after_forward", value, valid, source, TypeError)

    def _parse_names(self, value: Any, source: str) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) for v in value):
            raise _invalid(
                self._OWNER,
                "transformer_cls_names_to_wrap",
                value,
                "a list of class names or a comma-separated string",
                source,
                TypeError,
            )
        return [v.strip() for v in value if v.strip()]

    def _parse_mixed_precision(self, value: Any) -> Any:
        from torch.distributed.fsdp import MixedPrecisionPolicy

        owner = self._OWNER
        if value is None or isinstance(value, MixedPrecisionPolicy):
            return value
        if isinstance(value, str):
            key = value.lower()
            if key not in ("fp16", "bf16", "fp32"):
                raise _invalid(owner, "mixed_precision_policy", value, ["fp16", "bf16", "fp32"])
            dtype = FSDP_MIXED_PRECISION[key]
            return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype)
        if isinstance(value, dict):
            fields = [f.name for f in dataclasses.fields(MixedPrecisionPolicy)]
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise _invalid(
                    owner,
                    "mixed_precision_policy",
                    value,
                    f"a dict with keys among {', '.join(fields)} (unknown: {', '.join(unknown)})",
                )
            converted = dict(value)
            for key in ("param_dtype", "reduce_dtype", "output_dtype"):
                dtype = converted.get(key)
                if isinstance(dtype, str) and dtype.lower() in _DTYPE_NAMES:
                    converted[key] = _DTYPE_NAMES[dtype.lower()]
                elif dtype is not None and not isinstance(dtype, torch.dtype):
                    raise _invalid(
                        owner,
                        f"mixed_precision_policy[{key!r}]",
                        dtype,
                        "a torch.dtype, one of " + ", ".join(sorted(_DTYPE_NAMES)) + ", or None",
                    )
            return MixedPrecisionPolicy(**converted)
        raise _invalid(
            owner,
            "mixed_precision_policy",
            value,
            "None, a torch.distributed.fsdp.MixedPrecisionPolicy, a dict of its fields, "
            "or one of 'fp16', 'bf16', 'fp32'",
            error=TypeError,
        )

    def _parse_state_dict_type(self, value: Any, source: str) -> str:
        from torch.distributed.fsdp import StateDictType

        owner = self._OWNER
        original = value
        if isinstance(value, StateDictType):
            value = value.name
        elif isinstance(value, int) and not isinstance(value, bool):
            value = StateDictType(value).name if value in (1, 2, 3) else value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value)
            value = StateDictType(number).name if number in (1, 2, 3) else value
        if isinstance(value, str):
            name = value.strip().upper()
            if name.startswith("STATEDICTTYPE."):
                name = name.split(".", 1)[1]
            if name in STATE_DICT_TYPES:
                return name
            if name == "LOCAL_STATE_DICT":
                raise _invalid(
                    owner,
                    "state_dict_type",
                    original,
                    f"{_describe(STATE_DICT_TYPES)} (FSDP2 has no LOCAL_STATE_DICT)",
                    source,
                )
        raise _invalid(owner, "state_dict_type", original, STATE_DICT_TYPES, source)

    def _parse_ignored(self, value: Any, source: str) -> Any:
        owner = self._OWNER
        if value is None:
            return None
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as err:
                raise _invalid(
                    owner, "ignored_modules", value, f"a valid regular expression ({err})", source
                ) from None
            return value
        if isinstance(value, torch.nn.Module):
            raise _invalid(
                owner,
                "ignored_modules",
                value,
                "an iterable of modules (wrap one module in a list), a regex string or None",
                source,
                TypeError,
            )
        try:
            modules = list(value)
        except TypeError:
            modules = None
        if modules is None or not all(isinstance(m, torch.nn.Module) for m in modules):
            raise _invalid(
                owner,
                "ignored_modules",
                value,
                "an iterable of torch.nn.Module, a regex string matching module names, or None",
                source,
                TypeError,
            )
        return modules

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
            raise _invalid(
                self._OWNER, "set_mixed_precision(mixed_precision)", mixed_precision, valid
            )
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
                f"{self._OWNER}.transformer_cls_names_to_wrap=None: pass model= so that the "
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
                f"{self._OWNER}: class name(s) {', '.join(map(repr, unknown))} from {origin} "
                f"are not in the model {type(model).__name__}; its module classes are "
                f"{', '.join(sorted(present))}"
            )
        if not names:
            warn_on_main_process(
                f"{self._OWNER}: auto_wrap_policy='transformer_based_wrap' has no class names "
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
        if policy == "transformer_based_wrap":
            names = set(self._names_to_wrap(model))
            return any(cls.__name__ in names for cls in type(inner).__mro__)
        if policy == "size_based_wrap":
            threshold = (
                DEFAULT_MIN_NUM_PARAMS if self.min_num_params is None else self.min_num_params
            )
            count = sum(p.numel() for p in inner.parameters())
            return count > 0 and count >= threshold
        try:
            parameters = inspect.signature(policy).parameters
        except (TypeError, ValueError):
            parameters = {}
        if "recurse" in parameters and "nonwrapped_numel" in parameters:
            count = sum(p.numel() for p in inner.parameters())
            return bool(policy(module=inner, recurse=False, nonwrapped_numel=count))
        return bool(policy(inner))
