"""``DeepSpeedPlugin``: what DeepSpeed should do, from arguments, the launcher, or a JSON config.

Every field may come from three places: the constructor, the environment written by
``accel launch`` (``ACCEL_DEEPSPEED_*``, or Accelerate's ``ACCELERATE_DEEPSPEED_*``), and a
DeepSpeed JSON config (``hf_ds_config``, or ``--deepspeed_config_file``). A field given in one
place and left ``"auto"`` or absent in another is taken; the same field given two different
concrete values is refused with both values and their sources named. This module does not
import deepspeed (``accel.deepspeed.zero3``, which it builds on, imports it on first use).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from accel.deepspeed.config import AUTO, DeepSpeedConfig
from accel.deepspeed.zero3 import set_moe_leaf_modules, zero3_init_context
from accel.state import env
from accel.state.options import OFFLOAD_DEVICES, read_setting

# field -> (launcher option whose variables supply it (accel.state.options), dotted key in the
# DeepSpeed config)
_FIELDS: dict[str, tuple[str, str | None]] = {
    "gradient_accumulation_steps": ("gradient_accumulation_steps", "gradient_accumulation_steps"),
    "gradient_clipping": ("gradient_clipping", "gradient_clipping"),
    "zero_stage": ("zero_stage", "zero_optimization.stage"),
    "offload_optimizer_device": (
        "offload_optimizer_device",
        "zero_optimization.offload_optimizer.device",
    ),
    "offload_param_device": ("offload_param_device", "zero_optimization.offload_param.device"),
    "offload_optimizer_nvme_path": (
        "offload_optimizer_nvme_path",
        "zero_optimization.offload_optimizer.nvme_path",
    ),
    "offload_param_nvme_path": (
        "offload_param_nvme_path",
        "zero_optimization.offload_param.nvme_path",
    ),
    "zero3_init_flag": ("zero3_init_flag", None),
    "zero3_save_16bit_model": (
        "zero3_save_16bit_model",
        "zero_optimization.stage3_gather_16bit_weights_on_model_save",
    ),
    "transformer_moe_cls_names": ("deepspeed_moe_layer_cls_names", None),
}
CONFIG_FILE_OPTION = "deepspeed_config_file"
DEFAULT_ZERO_STAGE = 2


def _parse(field: str, raw: Any, source: str) -> Any:
    """Check one field's value (strings from the environment are converted)."""
    text = raw.strip() if isinstance(raw, str) else None
    original = raw

    def bad(valid: str) -> ValueError:
        return ValueError(
            f"{source}={original!r} is not valid for DeepSpeedPlugin.{field}: expected {valid}"
        )

    if field in ("gradient_accumulation_steps", "zero_stage"):
        if text is not None:
            if text.lower() == AUTO and field == "gradient_accumulation_steps":
                return None
            try:
                raw = int(text)
            except ValueError:
                raise bad("an integer") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad("an integer")
        if field == "zero_stage" and raw not in (0, 1, 2, 3):
            raise bad("0, 1, 2 or 3")
        if field == "gradient_accumulation_steps" and raw < 1:
            raise bad("an integer >= 1")
        return raw
    if field == "gradient_clipping":
        if text is not None:
            if text.lower() in ("none", AUTO, ""):
                return None
            try:
                raw = float(text)
            except ValueError:
                raise bad("a number >= 0") from None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
            raise bad("a number >= 0")
        return float(raw)
    if field in ("offload_optimizer_device", "offload_param_device"):
        value = str(raw).strip().lower()
        if value not in OFFLOAD_DEVICES:
            raise bad(" or ".join(OFFLOAD_DEVICES))
        return value
    if field in ("zero3_init_flag", "zero3_save_16bit_model"):
        if text is not None:
            return env.str_to_bool(text, source)
        if not isinstance(raw, bool):
            raise bad("True or False")
        return raw
    if field.endswith("nvme_path"):
        value = os.fspath(raw)
        return None if value.lower() == "none" else value
    if field == "transformer_moe_cls_names":
        if isinstance(raw, (list, tuple)):
            return ",".join(map(str, raw))
        return str(raw)
    return raw


@dataclasses.dataclass
class DeepSpeedPlugin:
    """DeepSpeed settings for the ``Accelerator`` (Accelerate's fields and meaning).

    Give a DeepSpeed JSON config (``hf_ds_config``: a dict or a file path), or the fields below
    and let accel write the config, or both (the fields fill the config's ``"auto"`` values and
    must agree with its concrete ones). Unset fields are read from what ``accel launch``
    passed (``--zero_stage``, ``--offload_optimizer_device``...). Without a config or a stage,
    ZeRO stage 2 is used.

    Example:
        >>> from accel.deepspeed import DeepSpeedPlugin
        >>> plugin = DeepSpeedPlugin(zero_stage=2, gradient_clipping=1.0)
        >>> plugin.deepspeed_config["zero_optimization"]["stage"]
        2
        >>> # accelerator = Accelerator(deepspeed_plugin=plugin)
    """

    hf_ds_config: Any = None
    gradient_accumulation_steps: int | None = None
    gradient_clipping: float | None = None
    zero_stage: int | None = None
    is_train_batch_min: bool = True
    offload_optimizer_device: str | None = None
    offload_param_device: str | None = None
    offload_optimizer_nvme_path: str | None = None
    offload_param_nvme_path: str | None = None
    zero3_init_flag: bool | None = None
    zero3_save_16bit_model: bool | None = None
    transformer_moe_cls_names: str | None = None
    enable_msamp: bool | None = None
    msamp_opt_level: str | None = None

    def __post_init__(self) -> None:
        if self.enable_msamp:
            raise ValueError(
                "DeepSpeedPlugin(enable_msamp=True): MS-AMP is not supported by accel; leave "
                "enable_msamp unset"
            )
        self.sources: dict[str, str] = {}
        self._read_fields()
        self._read_config()
        self._build_config()
        self.selected = False

    # -- where each value comes from ------------------------------------------------------

    def _read_fields(self) -> None:
        for field, (option_name, _) in _FIELDS.items():
            given = getattr(self, field)
            from_env, env_key = read_setting(option_name)
            value = None
            if given is not None:
                value = _parse(field, given, f"DeepSpeedPlugin({field}=...)")
                self.sources[field] = f"DeepSpeedPlugin({field}={given!r})"
            if from_env is not None and env_key is not None and from_env.strip() != "":
                launched = _parse(field, from_env, env_key)
                if value is not None and launched is not None and launched != value:
                    raise ValueError(
                        f"DeepSpeedPlugin({field}={given!r}) in the script conflicts with "
                        f"{env_key}={from_env!r} (set by accel launch or the accel config "
                        "file); remove one of the two"
                    )
                if value is None and launched is not None:
                    value = launched
                    self.sources[field] = f"{env_key}={from_env!r}"
            setattr(self, field, value)
        for part in ("optimizer", "param"):
            device = getattr(self, f"offload_{part}_device")
            if device == "nvme" and not getattr(self, f"offload_{part}_nvme_path"):
                raise ValueError(
                    f"offload_{part}_device='nvme' ({self.sources[f'offload_{part}_device']}) "
                    f"needs offload_{part}_nvme_path (a folder on a fast local disk)"
                )

    def _read_config(self) -> None:
        source = self.hf_ds_config
        origin = None
        if isinstance(source, DeepSpeedConfig):
            self.hf_ds_config = source
            return
        if source is None:
            path, key = read_setting(CONFIG_FILE_OPTION)
            if path and path.strip().lower() != "none":
                source = path
                origin = f"the DeepSpeed config file {path!r} (from {key})"
        self.hf_ds_config = DeepSpeedConfig(source, origin) if source is not None else None

    def _build_config(self) -> None:
        if self.hf_ds_config is None:
            stage = self.zero_stage if self.zero_stage is not None else DEFAULT_ZERO_STAGE
            if self.zero_stage is None:
                self.sources["zero_stage"] = "the default (no config file, no --zero_stage)"
            config: dict[str, Any] = {
                "train_batch_size": AUTO,
                "train_micro_batch_size_per_gpu": AUTO,
                "gradient_accumulation_steps": (
                    self.gradient_accumulation_steps
                    if self.gradient_accumulation_steps is not None
                    else AUTO
                ),
                "zero_optimization": {"stage": stage},
            }
            if self.gradient_clipping is not None:
                config["gradient_clipping"] = self.gradient_clipping
            zero = config["zero_optimization"]
            for part in ("optimizer", "param"):
                device = getattr(self, f"offload_{part}_device")
                if device not in (None, "none"):
                    section = zero[f"offload_{part}"] = {"device": device}
                    if device == "nvme":
                        section["nvme_path"] = getattr(self, f"offload_{part}_nvme_path")
            if stage == 3:
                zero["stage3_gather_16bit_weights_on_model_save"] = bool(
                    self.zero3_save_16bit_model
                )
            self.hf_ds_config = DeepSpeedConfig(config, origin="the DeepSpeedPlugin fields")
        else:
            values = {
                key: (getattr(self, field), self.sources.get(field, field))
                for field, (_, key) in _FIELDS.items()
                if key is not None
            }
            # A concrete field fills "auto" and missing keys, and must agree with the file.
            self.hf_ds_config.fill(values, must_match=True, add_missing=True)
            stage = self.hf_ds_config.get_value("zero_optimization.stage")
            if stage is None:
                self.hf_ds_config.set_value("zero_optimization.stage", DEFAULT_ZERO_STAGE)
                self.sources["zero_stage"] = (
                    "the default (the config has no zero_optimization.stage)"
                )
            elif stage == AUTO:
                self.hf_ds_config.set_value("zero_optimization.stage", DEFAULT_ZERO_STAGE)
            elif self.zero_stage is None:
                self.sources["zero_stage"] = self.hf_ds_config.origin
            stage = self.hf_ds_config.get_value("zero_optimization.stage")
            if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
                raise ValueError(
                    f"zero_optimization.stage={stage!r} in {self.hf_ds_config.origin} is not "
                    "valid: expected 0, 1, 2 or 3"
                )
            for field, key in (
                ("gradient_accumulation_steps", "gradient_accumulation_steps"),
                ("gradient_clipping", "gradient_clipping"),
            ):
                value = self.hf_ds_config.get_value(key)
                if getattr(self, field) is None and value not in (None, AUTO):
                    setattr(self, field, value)
                    self.sources[field] = self.hf_ds_config.origin
        self.zero_stage = self.hf_ds_config.get_value("zero_optimization.stage")
        offload_param = self.hf_ds_config.get_value("zero_optimization.offload_param.device")
        if offload_param not in (None, "none", AUTO) and self.zero_stage != 3:
            raise ValueError(
                f"offload_param_device={offload_param!r} needs ZeRO stage 3, but zero_stage is "
                f"{self.zero_stage} ({self.sources.get('zero_stage', self.hf_ds_config.origin)})"
            )
        for part in ("optimizer", "param"):
            device = self.hf_ds_config.get_value(f"zero_optimization.offload_{part}.device")
            if device not in (None, AUTO) and getattr(self, f"offload_{part}_device") is None:
                setattr(self, f"offload_{part}_device", device)
        if self.zero3_init_flag and self.zero_stage != 3:
            raise ValueError(
                f"zero3_init_flag=True ({self.sources['zero3_init_flag']}) needs ZeRO stage 3, but "
                f"zero_stage is {self.zero_stage} ({self.sources.get('zero_stage')})"
            )

    # -- the config --------------------------------------------------------------------------

    @property
    def deepspeed_config(self) -> dict[str, Any]:
        """The DeepSpeed config dict (``"auto"`` values are filled during ``prepare``).

        Example:
            >>> DeepSpeedPlugin(zero_stage=1).deepspeed_config["zero_optimization"]
            {'stage': 1}
        """
        return self.hf_ds_config.config

    @deepspeed_config.setter
    def deepspeed_config(self, value: dict[str, Any]) -> None:
        self.hf_ds_config = DeepSpeedConfig(value)

    def get_value(self, key: str, default: Any = None) -> Any:
        """The config value at dotted ``key``.

        Example:
            >>> DeepSpeedPlugin(zero_stage=3).get_value("zero_optimization.stage")
            3
        """
        return self.hf_ds_config.get_value(key, default)

    def is_auto(self, key: str) -> bool:
        """Whether the config value at dotted ``key`` is ``"auto"``.

        Example:
            >>> DeepSpeedPlugin().is_auto("train_micro_batch_size_per_gpu")
            True
        """
        return self.hf_ds_config.is_auto(key)

    def fill_match(
        self,
        ds_key_long: str,
        mismatches: list[str] | None = None,
        must_match: bool = True,
        **kwargs: Any,
    ) -> None:
        """Fill one ``"auto"`` config key from ``kwargs`` (Accelerate's signature).

        The keyword's name is the last part of ``ds_key_long`` or the whole key. A mismatch
        with a concrete value is appended to ``mismatches`` (if given) or raised.

        Example:
            >>> plugin = DeepSpeedPlugin()
            >>> plugin.fill_match("train_micro_batch_size_per_gpu", train_micro_batch_size_per_gpu=4)
            >>> plugin.get_value("train_micro_batch_size_per_gpu")
            4
        """
        name = ds_key_long if ds_key_long in kwargs else ds_key_long.rsplit(".", 1)[-1]
        if name not in kwargs:
            return
        try:
            self.hf_ds_config.fill({ds_key_long: (kwargs[name], name)}, must_match=must_match)
        except ValueError as error:
            if mismatches is None:
                raise
            mismatches.append(str(error))

    def deepspeed_config_process(
        self,
        prefix: str = "",
        mismatches: list[str] | None = None,
        config: Any = None,
        must_match: bool = True,
        **kwargs: Any,
    ) -> None:
        """Fill every ``"auto"`` key named in ``kwargs`` (dotted keys; Accelerate's method).

        Example:
            >>> plugin = DeepSpeedPlugin()
            >>> plugin.deepspeed_config_process(train_micro_batch_size_per_gpu=2)
            >>> plugin.get_value("train_micro_batch_size_per_gpu")
            2
        """
        values = {key: (value, f"{key}={value!r}") for key, value in kwargs.items()}
        self.hf_ds_config.fill(values, must_match=must_match)

    def set_mixed_precision(self, mixed_precision: str) -> None:
        """Reconcile the config's ``fp16``/``bf16`` sections with the ``Accelerator``'s mode.

        ``"auto"`` takes the mode; a missing section is added; a config that enables the
        other 16-bit type (or disables the requested one) is refused with both named. With
        ``"no"``, a config that enables fp16 or bf16 decides.

        Example:
            >>> plugin = DeepSpeedPlugin()
            >>> plugin.set_mixed_precision("bf16"); plugin.deepspeed_config["bf16"]
            {'enabled': True}
        """
        config = self.hf_ds_config
        mode = str(mixed_precision).lower()
        for dtype in ("fp16", "bf16"):
            if config.is_auto(f"{dtype}.enabled"):
                config.set_value(f"{dtype}.enabled", mode == dtype)
        if mode not in ("fp16", "bf16"):
            return
        other = "bf16" if mode == "fp16" else "fp16"
        if config.is_true(f"{other}.enabled"):
            raise ValueError(
                f"mixed_precision={mode!r} conflicts with {other}.enabled=true in "
                f'{config.origin}; use one 16-bit type (set {other}.enabled to "auto")'
            )
        if config.is_false(f"{mode}.enabled"):
            raise ValueError(
                f"mixed_precision={mode!r} conflicts with {mode}.enabled=false in "
                f'{config.origin}; set it to "auto" or true'
            )
        if not config.has(f"{mode}.enabled"):
            config.set_value(f"{mode}.enabled", True)

    # -- ZeRO-3 construction -------------------------------------------------------------

    def is_zero3_init_enabled(self) -> bool:
        """Whether models should be built already partitioned (ZeRO-3 ``zero3_init_flag``).

        Example:
            >>> DeepSpeedPlugin(zero_stage=3, zero3_init_flag=True).is_zero3_init_enabled()
            True
        """
        return bool(self.zero3_init_flag) and self.zero_stage == 3

    @contextlib.contextmanager
    def zero3_init_context_manager(self, enable: bool = False) -> Iterator[None]:
        """Build models inside: partitioned over the processes (``enable=True``, ZeRO-3), or
        explicitly not (``enable=False``, also for ``transformers``' ``from_pretrained``).

        Example:
            >>> with plugin.zero3_init_context_manager(enable=True):  # doctest: +SKIP
            ...     model = BigModel()
        """
        with zero3_init_context(self, enabled=enable):
            yield

    def set_moe_leaf_modules(self, model: Any) -> None:
        """Mark the Mixture-of-Experts layers named in ``transformer_moe_cls_names`` as ZeRO-3
        leaf modules (their parameters are gathered together).

        Example:
            >>> DeepSpeedPlugin(zero_stage=3, transformer_moe_cls_names="MoeBlock").set_moe_leaf_modules(model)  # doctest: +SKIP
        """
        if not self.transformer_moe_cls_names:
            return
        set_moe_leaf_modules(
            model, self.transformer_moe_cls_names, self.sources.get("transformer_moe_cls_names", "")
        )

    # -- several plugins -----------------------------------------------------------------

    def select(self, _from_accelerator_state: bool = False) -> None:
        """Make this the active plugin; call ``accelerator.state.select_deepspeed_plugin(name)``.

        Example:
            >>> accelerator.state.select_deepspeed_plugin("teacher")  # doctest: +SKIP
        """
        if not _from_accelerator_state:
            raise ValueError(
                "a DeepSpeedPlugin is activated through the accelerator's state: call "
                "accelerator.state.select_deepspeed_plugin(name) with its name in "
                "Accelerator(deepspeed_plugins={name: plugin, ...})"
            )
        self.selected = True

    def _unselect(self) -> None:
        self.selected = False
