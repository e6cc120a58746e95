"""What ``accel launch`` runs with: flags > environment > config file > defaults.

:func:`resolve` is a pure function: it takes the flags the user typed, an environment mapping
and the (flattened) config file, and returns every setting with the place it came from. It
never reads ``os.environ`` or the disk itself, so it is tested with a table of cases.

Example:
    >>> r = resolve({"mixed_precision": None}, {"ACCEL_MIXED_PRECISION": "bf16"}, {})
    >>> r.values["mixed_precision"], r.sources["mixed_precision"]
    ('bf16', 'env ACCEL_MIXED_PRECISION')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accel.state.options import (
    DYNAMO_BACKENDS,
    DYNAMO_MODES,
    MIXED_PRECISIONS,
    OPTIONS,
    RDZV_BACKENDS,
    Option,
    SettingError,
)

__all__ = [
    "DYNAMO_BACKENDS",
    "DYNAMO_MODES",
    "MIXED_PRECISIONS",
    "MODE_SWITCHES",
    "OPTIONS",
    "RDZV_BACKENDS",
    "Option",
    "Resolved",
    "SettingError",
    "flatten_config",
    "resolve",
]

# Accelerate's ``distributed_type`` in a config file, as launcher switches.
_DISTRIBUTED_TYPES = {
    "NO": {},
    "MULTI_CPU": {"cpu": True},
    "MULTI_GPU": {"multi_gpu": True},
    "FSDP": {"use_fsdp": True},
    "DEEPSPEED": {"use_deepspeed": True},
    "XLA": {"tpu": True},
    "TPU": {"tpu": True},
}
# Nested sections of Accelerate's YAML and the prefix their keys get (Accelerate's rule).
_SECTIONS = {
    "fsdp_config": "fsdp_",
    "dynamo_config": "dynamo_",
    "deepspeed_config": "",
    "parallelism_config": "parallelism_config_",
}


MODE_SWITCHES = ("cpu", "multi_gpu", "tpu", "use_fsdp", "use_deepspeed")


def flatten_config(config: Mapping[str, Any], mode_from_flags: bool = False) -> dict[str, Any]:
    """Accelerate's YAML as flat launcher settings: sections merged, ``distributed_type`` mapped.

    ``fsdp_config: {version: 2}`` becomes ``fsdp_version``; ``dynamo_config.backend`` becomes
    ``dynamo_backend``; ``distributed_type: MULTI_CPU`` becomes ``cpu: true``. With
    ``mode_from_flags`` (the user typed ``--cpu``, ``--multi_gpu``, ``--use_fsdp``...), the
    file's ``distributed_type`` is ignored, as in Accelerate.

    Example:
        >>> flatten_config({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2}})
        {'use_fsdp': True, 'fsdp_version': 2}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in _SECTIONS and isinstance(value, Mapping):
            prefix = _SECTIONS[key]
            for inner, inner_value in value.items():
                name = inner if inner.startswith(prefix) else prefix + inner
                flat[name] = inner_value
        elif key == "distributed_type":
            if value is not None and not mode_from_flags:
                flat.update(_DISTRIBUTED_TYPES.get(str(value).upper(), {}))
        else:
            flat[key] = value
    return flat


@dataclass
class Resolved:
    """Every launcher setting and where each came from (``flag ...``, ``env ...``, ``config
    ...``, ``default``).

    Example:
        >>> r = resolve({}, {}, {})
        >>> r.values["mixed_precision"], r.sources["mixed_precision"]
        ('no', 'default')
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def from_source(self, kind: str) -> dict[str, Any]:
        """The settings whose source starts with ``kind`` (``"config"``, ``"env"``, ``"flag"``).

        Example:
            >>> resolve({}, {}, {"debug": True}).from_source("config")
            {'debug': True}
        """
        return {
            name: self.values[name]
            for name, source in self.sources.items()
            if source.split(" ", 1)[0] == kind
        }


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config: Mapping[str, Any] | None,
    extra_env: Mapping[str, tuple[Any, str]] | None = None,
) -> Resolved:
    """Pick each setting from the flags, else ``environ``, else the config, else its default.

    ``flags`` maps option names to what argparse produced (``None``: not given). ``config`` is
    the flattened config file (:func:`flatten_config`). ``extra_env`` holds values derived
    from the environment by other means (SLURM), as ``name -> (value, source)``; they rank
    with the environment. Every value is parsed and checked: a bad one raises
    :class:`SettingError` naming its source.

    Example:
        >>> r = resolve({"mixed_precision": "fp16"}, {"ACCEL_MIXED_PRECISION": "bf16"},
        ...             {"mixed_precision": "no"})
        >>> r.values["mixed_precision"], r.sources["mixed_precision"]
        ('fp16', 'flag --mixed_precision')
    """
    config = config or {}
    extra_env = extra_env or {}
    result = Resolved()
    for option in OPTIONS:
        value: Any = None
        source = "default"
        where = ""
        if flags.get(option.name) is not None:
            value, source, where = flags[option.name], f"flag --{option.name}", f"--{option.name}"
        elif option.name in extra_env:
            value, where = extra_env[option.name]
            source = f"env {where}"
        elif any(key in environ for key in option.env):
            key = next(key for key in option.env if key in environ)
            value, source, where = environ[key], f"env {key}", key
        elif any(config.get(key) is not None for key in option.config_keys):
            key = next(key for key in option.config_keys if config.get(key) is not None)
            value, source, where = config[key], f"config {key}", f"config key {key}"
        if source == "default":
            result.values[option.name] = option.default
        else:
            result.values[option.name] = option.parse(value, where)
        result.sources[option.name] = source
    return result
