"""Keyword-argument handlers: small dataclasses that tune one torch call made by ``Accelerator``.

Pass instances through ``Accelerator(kwargs_handlers=[...])``. Each one checks its values when
it is built, so a typo fails at construction with a message naming the field, the value and
what would be valid, instead of deep inside torch later.

Example:
    >>> from accel.core.kwargs import DistributedDataParallelKwargs
    >>> DistributedDataParallelKwargs(find_unused_parameters=True).to_kwargs()
    {'find_unused_parameters': True}
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import Any, Literal

import torch

from accel.state.enums import BaseEnum
from accel.state.env import str_to_bool
from accel.state.kwargs import InitProcessGroupKwargs, KwargsHandler
from accel.state.options import read_setting
from accel.state.process_logging import warn_on_main_process

__all__ = [
    "AutocastKwargs",
    "DDPCommunicationHookType",
    "DistributedDataParallelKwargs",
    "FP8RecipeKwargs",
    "GradScalerKwargs",
    "InitProcessGroupKwargs",
    "KwargsHandler",
]

ARGUMENT = "argument"


def _env_with_source(name: str) -> tuple[str | None, str]:
    """Value of setting ``name`` in the environment and its variable (``ARGUMENT`` when unset);
    :func:`accel.state.options.read_setting` with this module's marker for "not from the
    environment"."""
    value, key = read_setting(name)
    return value, key or ARGUMENT


def _describe(valid: Iterable[Any] | str) -> str:
    if isinstance(valid, str):
        return valid
    return "one of " + ", ".join(repr(v) for v in valid)


def _invalid(
    owner: str,
    name: str,
    value: Any,
    valid: Iterable[Any] | str,
    source: str = ARGUMENT,
    error: type[Exception] = ValueError,
) -> Exception:
    """Build the error for a bad field value: field, value, where it came from, what is valid."""
    origin = "argument" if source == ARGUMENT else f"environment variable {source}"
    return error(
        f"{owner}.{name}={value!r} (from {origin}) is not valid; expected {_describe(valid)}"
    )


def _check_bool(owner: str, name: str, value: Any, optional: bool = False) -> None:
    if isinstance(value, bool) or (optional and value is None):
        return
    raise _invalid(
        owner, name, value, "True or False" + (" or None" if optional else ""), error=TypeError
    )


def _check_number(owner: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise _invalid(owner, name, value, f"a number of type {names}", error=TypeError)


@dataclasses.dataclass
class AutocastKwargs(KwargsHandler):
    """Options for the ``torch.autocast`` context that mixed precision opens around ``forward``.

    ``cache_enabled=None`` keeps torch's default.

    Example:
        >>> AutocastKwargs(cache_enabled=True).to_kwargs()
        {'cache_enabled': True}
    """

    enabled: bool = True
    cache_enabled: bool | None = None

    def __post_init__(self) -> None:
        _check_bool("AutocastKwargs", "enabled", self.enabled)
        _check_bool("AutocastKwargs", "cache_enabled", self.cache_enabled, optional=True)


class DDPCommunicationHookType(BaseEnum):
    """Gradient communication hooks of DDP: compression to fp16/bf16, or PowerSGD.

    Example:
        >>> DDPCommunicationHookType("power_sgd") is DDPCommunicationHookType.POWER_SGD
        True
    """

    NO = "no"
    FP16 = "fp16"
    BF16 = "bf16"
    POWER_SGD = "power_sgd"
    BATCHED_POWER_SGD = "batched_power_sgd"


_WRAPPERS = (
    DDPCommunicationHookType.NO,
    DDPCommunicationHookType.FP16,
    DDPCommunicationHookType.BF16,
)
_POWER_SGD = (DDPCommunicationHookType.POWER_SGD, DDPCommunicationHookType.BATCHED_POWER_SGD)
_COMM_FIELDS = ("comm_hook", "comm_wrapper", "comm_state_option")


def _to_hook_type(name: str, value: Any, allowed: Iterable[DDPCommunicationHookType]) -> Any:
    allowed = tuple(allowed)
    member: DDPCommunicationHookType | None = None
    if isinstance(value, DDPCommunicationHookType):
        member = value
    elif isinstance(value, str) and value.lower() in DDPCommunicationHookType:
        member = DDPCommunicationHookType(value.lower())
    if member is None or member not in allowed:
        raise _invalid("DistributedDataParallelKwargs", name, value, [m.value for m in allowed])
    return member


@dataclasses.dataclass
class DistributedDataParallelKwargs(KwargsHandler):
    """Options for ``torch.nn.parallel.DistributedDataParallel`` and its communication hook.

    ``to_kwargs()`` gives only the non-default constructor arguments of DDP; the ``comm_*``
    fields are applied afterwards by :meth:`register_comm_hook`. ``comm_hook`` and
    ``comm_wrapper`` take a :class:`DDPCommunicationHookType` or its string value (any case);
    ``comm_state_option`` holds keyword arguments of ``PowerSGDState``.

    Example:
        >>> kwargs = DistributedDataParallelKwargs(bucket_cap_mb=50, comm_hook="fp16")
        >>> kwargs.to_kwargs()
        {'bucket_cap_mb': 50}
        >>> kwargs.comm_hook
        <DDPCommunicationHookType.FP16: 'fp16'>
    """

    dim: int = 0
    broadcast_buffers: bool = True
    bucket_cap_mb: int = 25
    find_unused_parameters: bool = False
    check_reduction: bool = False
    gradient_as_bucket_view: bool = False
    static_graph: bool = False
    comm_hook: DDPCommunicationHookType = DDPCommunicationHookType.NO
    comm_wrapper: Literal[
        DDPCommunicationHookType.NO, DDPCommunicationHookType.FP16, DDPCommunicationHookType.BF16
    ] = DDPCommunicationHookType.NO
    comm_state_option: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = "DistributedDataParallelKwargs"
        _check_number(owner, "dim", self.dim, int)
        _check_number(owner, "bucket_cap_mb", self.bucket_cap_mb, (int, float))
        if self.bucket_cap_mb <= 0:
            raise _invalid(owner, "bucket_cap_mb", self.bucket_cap_mb, "a positive number")
        for name in (
            "broadcast_buffers",
            "find_unused_parameters",
            "check_reduction",
            "gradient_as_bucket_view",
            "static_graph",
        ):
            _check_bool(owner, name, getattr(self, name))
        if self.check_reduction:
            raise _invalid(
                owner,
                "check_reduction",
                self.check_reduction,
                "False: torch's DistributedDataParallel ignores check_reduction (deprecated); "
                "use find_unused_parameters=True to find parameters that got no gradient",
            )
        self.comm_hook = _to_hook_type("comm_hook", self.comm_hook, DDPCommunicationHookType)
        self.comm_wrapper = _to_hook_type("comm_wrapper", self.comm_wrapper, _WRAPPERS)
        if not isinstance(self.comm_state_option, dict):
            raise _invalid(
                owner,
                "comm_state_option",
                self.comm_state_option,
                "a dict of PowerSGDState keyword arguments",
                error=TypeError,
            )
        if self.comm_state_option:
            from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

            params = inspect.signature(powerSGD_hook.PowerSGDState.__init__).parameters
            known = [p for p in params if p not in ("self", "process_group")]
            unknown = sorted(set(self.comm_state_option) - set(known))
            if unknown:
                raise _invalid(
                    owner,
                    "comm_state_option",
                    self.comm_state_option,
                    f"keys among {', '.join(known)} (unknown: {', '.join(unknown)})",
                    error=TypeError,
                )
            if self.comm_hook not in _POWER_SGD:
                warn_on_main_process(
                    f"{owner}.comm_state_option is only used by the power_sgd and "
                    f"batched_power_sgd hooks; it is ignored with comm_hook={self.comm_hook.value!r}",
                    stacklevel=3,
                )
        if (
            self.comm_wrapper is not DDPCommunicationHookType.NO
            and self.comm_hook is DDPCommunicationHookType.NO
        ):
            warn_on_main_process(
                f"{owner}.comm_wrapper={self.comm_wrapper.value!r} wraps a comm_hook, but "
                "comm_hook='no'; the wrapper is ignored",
                stacklevel=3,
            )

    def to_dict(self, ignore_keys: Iterable[str] = _COMM_FIELDS) -> dict[str, Any]:
        """Fields as a dict, without ``ignore_keys`` (by default the ``comm_*`` fields).

        Example:
            >>> sorted(DistributedDataParallelKwargs().to_dict())[:3]
            ['broadcast_buffers', 'bucket_cap_mb', 'check_reduction']
        """
        ignored = set(ignore_keys)
        return {k: v for k, v in super().to_dict().items() if k not in ignored}

    def register_comm_hook(self, model: torch.nn.parallel.DistributedDataParallel) -> None:
        """Register the configured communication hook on a DDP-wrapped ``model``.

        Does nothing when ``comm_hook`` is ``"no"``. ``comm_wrapper`` (fp16/bf16) wraps the hook
        so its communication is compressed too; PowerSGD hooks get a ``PowerSGDState`` built
        from ``comm_state_option`` on the default process group.

        Example:
            >>> ddp_model = torch.nn.parallel.DistributedDataParallel(model)  # doctest: +SKIP
            >>> DistributedDataParallelKwargs(comm_hook="bf16").register_comm_hook(ddp_model)  # doctest: +SKIP
        """
        if self.comm_hook is DDPCommunicationHookType.NO:
            return
        if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
            raise TypeError(
                "DistributedDataParallelKwargs.register_comm_hook needs a model wrapped in "
                f"torch.nn.parallel.DistributedDataParallel, got {type(model).__name__}"
            )
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

        hooks = {
            DDPCommunicationHookType.FP16: default_hooks.fp16_compress_hook,
            DDPCommunicationHookType.BF16: default_hooks.bf16_compress_hook,
            DDPCommunicationHookType.POWER_SGD: powerSGD_hook.powerSGD_hook,
            DDPCommunicationHookType.BATCHED_POWER_SGD: powerSGD_hook.batched_powerSGD_hook,
        }
        wrappers = {
            DDPCommunicationHookType.FP16: default_hooks.fp16_compress_wrapper,
            DDPCommunicationHookType.BF16: default_hooks.bf16_compress_wrapper,
        }
        hook = hooks[self.comm_hook]
        if self.comm_wrapper in wrappers:
            hook = wrappers[self.comm_wrapper](hook)
        state = None
        if self.comm_hook in _POWER_SGD:
            state = powerSGD_hook.PowerSGDState(None, **self.comm_state_option)
        model.register_comm_hook(state=state, hook=hook)


@dataclasses.dataclass
class GradScalerKwargs(KwargsHandler):
    """Options for the ``torch.amp.GradScaler`` used with fp16 mixed precision.

    The same constraints as torch's are checked when the object is built: ``init_scale > 0``,
    ``growth_factor > 1``, ``0 < backoff_factor < 1``, ``growth_interval >= 1``.

    Example:
        >>> GradScalerKwargs(backoff_factor=0.25).to_kwargs()
        {'backoff_factor': 0.25}
    """

    init_scale: float = 65536.0
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    enabled: bool = True

    def __post_init__(self) -> None:
        owner = "GradScalerKwargs"
        for name in ("init_scale", "growth_factor", "backoff_factor"):
            _check_number(owner, name, getattr(self, name), (int, float))
        _check_number(owner, "growth_interval", self.growth_interval, int)
        _check_bool(owner, "enabled", self.enabled)
        if not self.init_scale > 0:
            raise _invalid(owner, "init_scale", self.init_scale, "a number > 0")
        if not self.growth_factor > 1:
            raise _invalid(owner, "growth_factor", self.growth_factor, "a number > 1")
        if not 0 < self.backoff_factor < 1:
            raise _invalid(owner, "backoff_factor", self.backoff_factor, "a number in (0, 1)")
        if self.growth_interval < 1:
            raise _invalid(owner, "growth_interval", self.growth_interval, "an integer >= 1")


FP8_BACKENDS = ("TE", "MSAMP", "AO")
FP8_FORMATS = ("HYBRID", "E4M3", "E5M2")
# Fields of Accelerate's FP8RecipeKwargs that belong to TransformerEngine's delayed scaling, MX
# block scaling or MS-AMP: accel's torchao engine has no such knob, so a value is refused.
_FP8_ENGINE_ONLY = {
    "use_autocast_during_eval": ("USE_AUTOCAST_DURING_EVAL", "TransformerEngine"),
    "margin": ("MARGIN", "TransformerEngine's delayed scaling"),
    "interval": ("INTERVAL", "TransformerEngine's delayed scaling"),
    "amax_history_len": ("AMAX_HISTORY_LEN", "TransformerEngine's delayed scaling"),
    "amax_compute_algo": ("AMAX_COMPUTE_ALGO", "TransformerEngine's delayed scaling"),
    "use_mxfp8_block_scaling": ("USE_MXFP8_BLOCK_SCALING", "TransformerEngine's MXFP8 recipe"),
    "opt_level": ("OPT_LEVEL", "MS-AMP"),
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _env_flag(name: str) -> tuple[bool | None, str]:
    value, source = _env_with_source(name)
    if value is None:
        return None, source
    if value.strip().lower() not in _TRUE + _FALSE:
        raise ValueError(f"{source}={value!r} is not valid; expected 1/0, true/false, yes/no")
    return value.strip().lower() in _TRUE, source


@dataclasses.dataclass
class FP8RecipeKwargs(KwargsHandler):
    """The fp8 recipe of ``mixed_precision="fp8"``, which accel runs with torchao's float8 layers.

    Honoured fields (each also read from ``ACCEL_FP8_<NAME>`` / ``ACCELERATE_FP8_<NAME>``
    when left at ``None``):

    - ``backend``: ``"ao"`` (torchao, also what ``None`` picks). ``"te"`` and ``"msamp"``
      (TransformerEngine, MS-AMP) are refused: accel does not drive those engines.
    - ``fp8_format``: ``"HYBRID"`` (default: e4m3 forward, e5m2 gradients), ``"E4M3"`` or
      ``"E5M2"``.
    - ``override_linear_precision``: ``(fprop, dgrad, wgrad)``, which matmuls stay in high
      precision (env: ``..._OVERRIDE_FPROP``, ``..._OVERRIDE_DGRAD``, ``..._OVERRIDE_WGRAD``).

    The fields of TransformerEngine's delayed scaling (``margin``, ``interval``,
    ``amax_history_len``, ``amax_compute_algo``), ``use_autocast_during_eval``,
    ``use_mxfp8_block_scaling`` and MS-AMP's ``opt_level`` have no counterpart in torchao's
    dynamic scaling: setting one (argument or environment) raises ``ValueError`` naming it.

    Example:
        >>> FP8RecipeKwargs(backend="ao", fp8_format="e4m3").fp8_format
        'E4M3'
    """

    backend: str | None = None
    use_autocast_during_eval: bool | None = None
    margin: int | None = None
    interval: int | None = None
    fp8_format: str | None = None
    amax_history_len: int | None = None
    amax_compute_algo: str | None = None
    override_linear_precision: tuple[bool, bool, bool] | None = None
    use_mxfp8_block_scaling: bool | None = None
    opt_level: str | None = None

    def __post_init__(self) -> None:
        owner = "FP8RecipeKwargs"
        self.backend = self._choice("backend", "BACKEND", FP8_BACKENDS)
        if self.backend in ("TE", "MSAMP"):
            engine = "TransformerEngine" if self.backend == "TE" else "MS-AMP"
            raise ValueError(
                f"{owner}.backend={self.backend.lower()!r}: accel runs fp8 through torchao "
                f"only and does not drive {engine}; use backend='ao' (or leave it unset)"
            )
        self.fp8_format = self._choice("fp8_format", "FORMAT", FP8_FORMATS) or "HYBRID"
        self._read_override()
        for name, (env_name, engine) in _FP8_ENGINE_ONLY.items():
            value, source = getattr(self, name), ARGUMENT
            if value is None:
                value, source = _env_with_source("FP8_" + env_name)
            if value is not None:
                origin = "argument" if source == ARGUMENT else f"environment variable {source}"
                raise ValueError(
                    f"{owner}.{name}={value!r} (from {origin}) configures {engine}, which accel "
                    "does not use: its fp8 runs on torchao with dynamic per-tensor scaling. "
                    f"Leave {name} unset"
                )

    def _choice(self, name: str, env_name: str, valid: tuple[str, ...]) -> str | None:
        value, source = getattr(self, name), ARGUMENT
        if value is None:
            value, source = _env_with_source("FP8_" + env_name)
            if value is None:
                return None
        if not isinstance(value, str) or value.upper() not in valid:
            raise _invalid("FP8RecipeKwargs", name, value, [v.lower() for v in valid], source)
        return value.upper()

    def _read_override(self) -> None:
        value = self.override_linear_precision
        if value is None:
            flags = [_env_flag(f"FP8_OVERRIDE_{part}")[0] for part in ("FPROP", "DGRAD", "WGRAD")]
            value = tuple(bool(flag) for flag in flags)
        if (
            not isinstance(value, (tuple, list))
            or len(value) != 3
            or not all(isinstance(v, bool) for v in value)
        ):
            raise _invalid(
                "FP8RecipeKwargs",
                "override_linear_precision",
                value,
                "a tuple of three bools (fprop, dgrad, wgrad)",
                error=TypeError,
            )
        fprop, dgrad, wgrad = value
        self.override_linear_precision = (fprop, dgrad, wgrad)


def check_int(
    owner: str, name: str, value: Any, minimum: int, optional: bool = False, source: str = ARGUMENT
) -> None:
    """Refuse ``value`` unless it is an int >= ``minimum`` (or ``None`` when optional),
    naming ``owner.name`` and where the value came from.

    Example:
        >>> check_int("Plugin", "steps", 2, 1)
    """
    if optional and value is None:
        return
    valid = f"an integer >= {minimum}" + (" or None" if optional else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(owner, name, value, valid, source, error=TypeError)
    if value < minimum:
        raise _invalid(owner, name, value, valid, source)


def env_truth(owner: str, name: str, raw: str, source: str) -> bool:
    """``raw`` (from ``source``) as a bool, or a ``ValueError`` naming ``owner.name``.

    Example:
        >>> env_truth("Plugin", "flag", "yes", "ACCEL_FLAG")
        True
    """
    try:
        return str_to_bool(raw, source)
    except ValueError:
        raise _invalid(
            owner, name, raw, "a truth value (1/true/yes/on or 0/false/no/off)", source
        ) from None
