"""Parsing and validation of ``FullyShardedDataParallelPlugin``'s fields.

Each ``parse_*`` function takes one field's value and where it came from (``source``: the
marker :data:`~accel.core.kwargs.ARGUMENT` for an argument, else the name of the ``FSDP_*`` /
``ACCEL_FSDP_*`` environment variable it was read from) and returns the value the plugin
stores, or raises an error naming the field, the value, its source and what is valid.
Environment variables arrive as strings; arguments keep their Python types.

Example:
    >>> parse_reshard_after_forward("SHARD_GRAD_OP", "FSDP_RESHARD_AFTER_FORWARD")
    False
    >>> parse_class_names("Block, Embedding", "FSDP_TRANSFORMER_CLS_TO_WRAP")
    ['Block', 'Embedding']
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from accel.core.kwargs import ARGUMENT, _describe, _invalid, check_int, env_truth
from accel.state import option_parsers
from accel.state.options import AUTO_WRAP_POLICIES as _AUTO_WRAP_POLICIES
from accel.state.options import STATE_DICT_TYPES

if TYPE_CHECKING:
    from torch.distributed.fsdp import MixedPrecisionPolicy, OffloadPolicy

__all__ = [
    "AUTO_WRAP_POLICIES",
    "DEFAULT_MIN_NUM_PARAMS",
    "FSDP1_ONLY",
    "FSDP_MIXED_PRECISION",
    "OWNER",
    "parse_auto_wrap_policy",
    "parse_class_names",
    "parse_cpu_offload",
    "parse_flag",
    "parse_fsdp_version",
    "parse_ignored_modules",
    "parse_min_num_params",
    "parse_mixed_precision_policy",
    "parse_reshard_after_forward",
    "parse_state_dict_type",
]

OWNER = "FullyShardedDataParallelPlugin"
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
FSDP1_ONLY = {
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


def parse_fsdp_version(value: Any, source: str) -> int:
    """``2``; a ``ValueError`` explaining how to migrate for ``1``, naming other values.

    Example:
        >>> parse_fsdp_version("2", "FSDP_VERSION")
        2
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2):
        raise _invalid(OWNER, "fsdp_version", value, "2 (accel implements FSDP2 only)", source)
    if value == 1:
        origin = "argument" if source == ARGUMENT else f"environment variable {source}"
        raise ValueError(
            f"{OWNER}.fsdp_version=1 (from {origin}) is not supported; {_FSDP1_MIGRATION}"
        )
    return 2


def parse_reshard_after_forward(value: Any, source: str) -> bool | int:
    """``True``/``False`` or a world size >= 2; Accelerate's ``"FULL_SHARD"`` is ``True``,
    ``"SHARD_GRAD_OP"`` is ``False``.

    Example:
        >>> parse_reshard_after_forward("FULL_SHARD", "FSDP_RESHARD_AFTER_FORWARD")
        True
    """
    try:
        return option_parsers.parse_reshard_after_forward(value, source)
    except option_parsers.SettingError:
        error = ValueError if isinstance(value, (bool, int, str)) else TypeError
        valid = option_parsers.RESHARD_AFTER_FORWARD_VALUES
        raise _invalid(OWNER, "reshard_after_forward", value, valid, source, error) from None


def parse_cpu_offload(value: Any, source: str) -> bool | OffloadPolicy:
    """``True``/``False`` (an environment variable's truth value) or a torch ``OffloadPolicy``.

    Example:
        >>> parse_cpu_offload("true", "FSDP_OFFLOAD_PARAMS")
        True
    """
    from torch.distributed.fsdp import OffloadPolicy

    if isinstance(value, str) and source != ARGUMENT:
        value = env_truth(OWNER, "cpu_offload", value, source)
    if not isinstance(value, (bool, OffloadPolicy)):
        raise _invalid(
            OWNER, "cpu_offload", value, "True, False or a torch OffloadPolicy", source, TypeError
        )
    return value


def parse_auto_wrap_policy(value: Any, source: str) -> str | Callable[..., Any] | None:
    """A policy name in lower case (``"no_wrap"`` becomes ``None``), a callable, or ``None``.

    Example:
        >>> parse_auto_wrap_policy("TRANSFORMER_BASED_WRAP", "FSDP_AUTO_WRAP_POLICY")
        'transformer_based_wrap'
    """
    if isinstance(value, str):
        if value.lower() not in AUTO_WRAP_POLICIES:
            raise _invalid(OWNER, "auto_wrap_policy", value, AUTO_WRAP_POLICIES, source)
        return None if value.lower() == "no_wrap" else value.lower()
    if value is not None and not callable(value):
        raise _invalid(
            OWNER,
            "auto_wrap_policy",
            value,
            f"{_describe(AUTO_WRAP_POLICIES)}, a callable or None",
            source,
            TypeError,
        )
    return value


def parse_class_names(value: Any, source: str) -> list[str] | None:
    """Class names to wrap, from a list or a comma-separated string (``None`` stays ``None``).

    Example:
        >>> parse_class_names(["Block"], "argument")
        ['Block']
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) for v in value):
        raise _invalid(
            OWNER,
            "transformer_cls_names_to_wrap",
            value,
            "a list of class names or a comma-separated string",
            source,
            TypeError,
        )
    return [v.strip() for v in value if v.strip()]


def parse_min_num_params(value: Any, source: str) -> int | None:
    """An integer >= 0 (from a string when read from the environment), or ``None``.

    Example:
        >>> parse_min_num_params("1000", "FSDP_MIN_NUM_PARAMS")
        1000
    """
    if isinstance(value, str) and source != ARGUMENT:
        try:
            value = int(value)
        except ValueError:
            raise _invalid(OWNER, "min_num_params", value, "an integer >= 0", source) from None
    check_int(OWNER, "min_num_params", value, 0, optional=True, source=source)
    return None if value is None else int(value)


def parse_flag(name: str, value: Any, source: str) -> bool:
    """Field ``name`` as a bool (an environment variable's truth value, or an argument's bool).

    Example:
        >>> parse_flag("activation_checkpointing", "1", "FSDP_ACTIVATION_CHECKPOINTING")
        True
    """
    if isinstance(value, str) and source != ARGUMENT:
        value = env_truth(OWNER, name, value, source)
    if not isinstance(value, bool):
        raise _invalid(OWNER, name, value, "True or False", source, TypeError)
    return value


def parse_mixed_precision_policy(value: Any) -> MixedPrecisionPolicy | None:
    """A torch ``MixedPrecisionPolicy`` from one, from a dict of its fields (dtypes may be
    names such as ``"bf16"``) or from ``"fp16"``/``"bf16"``/``"fp32"``; ``None`` stays ``None``.

    Example:
        >>> parse_mixed_precision_policy({"param_dtype": "bf16"}).param_dtype
        torch.bfloat16
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if value is None or isinstance(value, MixedPrecisionPolicy):
        return value
    if isinstance(value, str):
        key = value.lower()
        if key not in ("fp16", "bf16", "fp32"):
            raise _invalid(OWNER, "mixed_precision_policy", value, ["fp16", "bf16", "fp32"])
        dtype = FSDP_MIXED_PRECISION[key]
        return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype)
    if isinstance(value, dict):
        fields = [f.name for f in dataclasses.fields(MixedPrecisionPolicy)]
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise _invalid(
                OWNER,
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
                    OWNER,
                    f"mixed_precision_policy[{key!r}]",
                    dtype,
                    "a torch.dtype, one of " + ", ".join(sorted(_DTYPE_NAMES)) + ", or None",
                )
        return MixedPrecisionPolicy(**converted)
    raise _invalid(
        OWNER,
        "mixed_precision_policy",
        value,
        "None, a torch.distributed.fsdp.MixedPrecisionPolicy, a dict of its fields, "
        "or one of 'fp16', 'bf16', 'fp32'",
        error=TypeError,
    )


def parse_state_dict_type(value: Any, source: str) -> str:
    """``"FULL_STATE_DICT"`` or ``"SHARDED_STATE_DICT"``, from a name (any case, with or
    without ``StateDictType.``), torch's ``StateDictType`` or its number (``1``/``3``).

    Example:
        >>> parse_state_dict_type("3", "FSDP_STATE_DICT_TYPE")
        'SHARDED_STATE_DICT'
    """
    from torch.distributed.fsdp import StateDictType

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
                OWNER,
                "state_dict_type",
                original,
                f"{_describe(STATE_DICT_TYPES)} (FSDP2 has no LOCAL_STATE_DICT)",
                source,
            )
    raise _invalid(OWNER, "state_dict_type", original, STATE_DICT_TYPES, source)


def parse_ignored_modules(value: Any, source: str) -> list[torch.nn.Module] | str | None:
    """Modules FSDP2 leaves alone: an iterable of modules (as a list), a regular expression
    matching module names, or ``None``.

    Example:
        >>> parse_ignored_modules(r"lm_head|embed", "FSDP_IGNORED_MODULES")
        'lm_head|embed'
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as err:
            raise _invalid(
                OWNER, "ignored_modules", value, f"a valid regular expression ({err})", source
            ) from None
        return value
    if isinstance(value, torch.nn.Module):
        raise _invalid(
            OWNER,
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
            OWNER,
            "ignored_modules",
            value,
            "an iterable of torch.nn.Module, a regex string matching module names, or None",
            source,
            TypeError,
        )
    return modules
