"""A DeepSpeed JSON config with dotted access and ``"auto"`` values filled from what is known.

DeepSpeed configs written for Accelerate use ``"auto"`` for values the training script already
knows (micro batch size, accumulation steps, learning rate...). :class:`DeepSpeedConfig` reads
such a config, fills ``"auto"`` values from named sources, refuses a concrete value that
disagrees with a setting given elsewhere (naming both), and lists every ``"auto"`` that is
still open before the engine is built. This module does not import deepspeed or torch.

Example:
    >>> config = DeepSpeedConfig({"train_micro_batch_size_per_gpu": "auto"})
    >>> config.fill({"train_micro_batch_size_per_gpu": (8, "the dataloader's batch_size")})
    >>> config.get_value("train_micro_batch_size_per_gpu")
    8
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

AUTO = "auto"

# How an "auto" value left open can be given, for the error message.
_HOW_TO_SET = {
    "train_micro_batch_size_per_gpu": (
        "pass the training dataloader (with an integer batch_size) to accelerator.prepare()"
    ),
    "train_batch_size": "pass the training dataloader to accelerator.prepare()",
    "gradient_accumulation_steps": "Accelerator(gradient_accumulation_steps=...)",
    "gradient_clipping": "DeepSpeedPlugin(gradient_clipping=...) or --gradient_clipping",
    "optimizer.params.lr": "DummyOptim(params, lr=...)",
    "optimizer.params.weight_decay": "DummyOptim(params, weight_decay=...)",
    "scheduler.params.total_num_steps": "DummyScheduler(optimizer, total_num_steps=...)",
    "scheduler.params.warmup_num_steps": "DummyScheduler(optimizer, warmup_num_steps=...)",
    "zero_optimization.reduce_bucket_size": "a model with config.hidden_size (transformers)",
    "zero_optimization.stage3_prefetch_bucket_size": "a model with config.hidden_size",
    "zero_optimization.stage3_param_persistence_threshold": "a model with config.hidden_size",
}


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of a DeepSpeed config given as a dict or as the path of a JSON file.

    Example:
        >>> load_config({"zero_optimization": {"stage": 2}})
        {'zero_optimization': {'stage': 2}}
    """
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"hf_ds_config={source!r} ({type(source).__name__}) must be a dict or the path of "
            "a DeepSpeed JSON config file"
        )
    path = os.path.expanduser(os.fspath(source))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the DeepSpeed config file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"the DeepSpeed config file {path!r} is not valid JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError(
            f"the DeepSpeed config file {path!r} holds a {type(loaded).__name__}, not a JSON object"
        )
    return loaded


def _walk(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _walk(value, dotted + ".")
        else:
            yield dotted, value


class DeepSpeedConfig:
    """A DeepSpeed config dict addressed by dotted keys (``"zero_optimization.stage"``).

    ``origin`` says where the config came from (a file path, or ``"hf_ds_config"``) and is
    named in every error. Accelerate calls this class ``HfDeepSpeedConfig``; that name is an
    alias.

    Example:
        >>> config = DeepSpeedConfig({"zero_optimization": {"stage": 3}})
        >>> config.zero_stage, config.is_zero3()
        (3, True)
    """

    def __init__(
        self, config: str | os.PathLike[str] | Mapping[str, Any], origin: str | None = None
    ) -> None:
        self.config = load_config(config)
        if origin is None:
            origin = (
                "hf_ds_config"
                if isinstance(config, Mapping)
                else f"the DeepSpeed config file {os.fspath(config)!r}"
            )
        self.origin = origin

    # -- reading -------------------------------------------------------------------------

    def _find(self, key: str) -> tuple[dict[str, Any] | None, str]:
        node: Any = self.config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return None, leaf
        return (node if isinstance(node, dict) else None), leaf

    def find_config_node(self, key: str) -> tuple[dict[str, Any] | None, str]:
        """The dict holding dotted ``key``'s last part, and that part (``None`` when a parent
        is missing); transformers' ``HfTrainerDeepSpeedConfig`` fills ``"auto"`` values
        through it.

        Example:
            >>> DeepSpeedConfig({"a": {"b": 1}}).find_config_node("a.b")
            ({'b': 1}, 'b')
        """
        return self._find(key)

    def get_value(self, key: str, default: Any = None) -> Any:
        """The value at dotted ``key``, or ``default`` when it is not set.

        Example:
            >>> DeepSpeedConfig({"a": {"b": 1}}).get_value("a.b")
            1
        """
        node, leaf = self._find(key)
        return node.get(leaf, default) if node is not None else default

    def has(self, key: str) -> bool:
        """Whether dotted ``key`` is set (to anything, ``"auto"`` included).

        Example:
            >>> DeepSpeedConfig({"a": {"b": 1}}).has("a.c")
            False
        """
        node, leaf = self._find(key)
        return node is not None and leaf in node

    def is_auto(self, key: str) -> bool:
        """Whether dotted ``key`` is set to ``"auto"``.

        Example:
            >>> DeepSpeedConfig({"gradient_clipping": "auto"}).is_auto("gradient_clipping")
            True
        """
        return self.get_value(key) == AUTO

    def is_true(self, key: str) -> bool:
        """Whether dotted ``key`` is set and true (``"auto"`` is not).

        Example:
            >>> DeepSpeedConfig({"bf16": {"enabled": True}}).is_true("bf16.enabled")
            True
        """
        value = self.get_value(key)
        return value is not None and value != AUTO and bool(value)

    def is_false(self, key: str) -> bool:
        """Whether dotted ``key`` is set and false.

        Example:
            >>> DeepSpeedConfig({"fp16": {"enabled": False}}).is_false("fp16.enabled")
            True
        """
        value = self.get_value(key)
        return value is not None and value != AUTO and not bool(value)

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage (0 when the config has no ``zero_optimization.stage``).

        Example:
            >>> DeepSpeedConfig({}).zero_stage
            0
        """
        stage = self.get_value("zero_optimization.stage", 0)
        return stage if isinstance(stage, int) else -1

    def is_zero2(self) -> bool:
        """Whether the config asks for ZeRO stage 2.

        Example:
            >>> DeepSpeedConfig({"zero_optimization": {"stage": 2}}).is_zero2()
            True
        """
        return self.zero_stage == 2

    def is_zero3(self) -> bool:
        """Whether the config asks for ZeRO stage 3.

        Example:
            >>> DeepSpeedConfig({"zero_optimization": {"stage": 3}}).is_zero3()
            True
        """
        return self.zero_stage == 3

    def is_offload(self) -> bool:
        """Whether optimizer states or parameters are offloaded (to CPU or NVMe).

        Example:
            >>> DeepSpeedConfig({"zero_optimization": {"offload_optimizer": {"device": "cpu"}}}).is_offload()
            True
        """
        return any(
            self.get_value(f"zero_optimization.{part}.device", "none") not in ("none", None)
            for part in ("offload_optimizer", "offload_param")
        )

    def auto_keys(self) -> list[str]:
        """Every dotted key still set to ``"auto"``.

        Example:
            >>> DeepSpeedConfig({"a": "auto", "b": {"c": "auto", "d": 1}}).auto_keys()
            ['a', 'b.c']
        """
        return [key for key, value in _walk(self.config) if value == AUTO]

    # -- writing -------------------------------------------------------------------------

    def set_value(self, key: str, value: Any) -> None:
        """Set dotted ``key`` to ``value``, creating the sections on the way.

        Example:
            >>> config = DeepSpeedConfig({})
            >>> config.set_value("zero_optimization.stage", 2); config.config
            {'zero_optimization': {'stage': 2}}
        """
        node = self.config
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value

    def fill(
        self,
        values: Mapping[str, tuple[Any, str]],
        must_match: bool = True,
        add_missing: bool = False,
    ) -> None:
        """Fill ``"auto"`` keys from ``values`` (``{key: (value, where it came from)}``).

        A key whose value is concrete and differs from the one given raises ``ValueError``
        naming both (with ``must_match``). Keys absent from the config are added only with
        ``add_missing``. A value of ``None`` means "not known" and fills nothing.

        Example:
            >>> config = DeepSpeedConfig({"gradient_clipping": "auto"})
            >>> config.fill({"gradient_clipping": (1.0, "DeepSpeedPlugin(gradient_clipping=1.0)")})
            >>> config.get_value("gradient_clipping")
            1.0
        """
        conflicts = []
        for key, (value, source) in values.items():
            if value is None:
                continue
            if not self.has(key):
                if add_missing:
                    self.set_value(key, value)
                continue
            current = self.get_value(key)
            if current == AUTO:
                self.set_value(key, value)
            elif must_match and not _same(current, value):
                conflicts.append(
                    f"  {key}: {current!r} in {self.origin} vs {value!r} from {source}"
                )
        if conflicts:
            raise ValueError(
                "the DeepSpeed config disagrees with settings given elsewhere:\n"
                + "\n".join(conflicts)
                + '\nremove one of the two, or set the config value to "auto" to take the '
                "other one"
            )

    def check_resolved(self) -> None:
        """Raise ``ValueError`` naming every key still ``"auto"`` and how to give it a value.

        Example:
            >>> DeepSpeedConfig({"gradient_clipping": 1.0}).check_resolved()
        """
        left = self.auto_keys()
        if not left:
            return
        lines = [
            f"  {key}: {_HOW_TO_SET.get(key, 'set a concrete value in the config')}" for key in left
        ]
        raise ValueError(
            f'these values of {self.origin} are still "auto" and accel cannot infer them:\n'
            + "\n".join(lines)
        )

    def __repr__(self) -> str:
        return f"DeepSpeedConfig({self.config!r})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return a == b


HfDeepSpeedConfig = DeepSpeedConfig
