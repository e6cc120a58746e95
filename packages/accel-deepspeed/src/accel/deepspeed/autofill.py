"""Filling a DeepSpeed config's ``"auto"`` values from what ``prepare`` receives.

=================================================  =============================================
config key                                         filled from
=================================================  =============================================
``train_micro_batch_size_per_gpu``                 the dataloaders' ``batch_size`` (per process;
                                                   divided by the process count with
                                                   ``split_batches``; smallest of several, or
                                                   largest with ``is_train_batch_min=False``)
``train_batch_size``                               micro batch x accumulation x processes
``gradient_accumulation_steps``                    the ``Accelerator``'s
``gradient_clipping``                              the plugin's, else 1.0 (Accelerate's default)
``optimizer.params.*``                             ``DummyOptim``'s ``lr``, ``weight_decay``, ...
``scheduler.params.*``                             ``DummyScheduler``'s steps; ``warmup_max_lr`` =
                                                   the optimizer's lr, ``warmup_min_lr`` = 0
``fp16.enabled`` / ``bf16.enabled``                ``mixed_precision`` (when the plugin is set up)
``zero_optimization.*bucket_size``, ``..._threshold``  the model's ``config.hidden_size``
``zero_optimization.stage3_gather_16bit_...``      ``zero3_save_16bit_model``, else false
=================================================  =============================================

A concrete config value that disagrees with a fact (say ``train_micro_batch_size_per_gpu: 4``
with a dataloader of batch size 8) is refused with both named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from accel.deepspeed.config import AUTO
from accel.deepspeed.dummies import DummyOptim, DummyScheduler

if TYPE_CHECKING:
    from accel.deepspeed.plugin import DeepSpeedPlugin


def hidden_size(model: torch.nn.Module | None) -> int | None:
    """The model's hidden size from its ``config`` (``transformers`` models), or ``None``.

    Example:
        >>> hidden_size(torch.nn.Linear(2, 2)) is None
        True
    """
    config = getattr(model, "config", None)
    size = getattr(config, "hidden_size", None)
    if isinstance(size, int):
        return size
    sizes = getattr(config, "hidden_sizes", None)
    if isinstance(sizes, (list, tuple)) and sizes:
        return max(sizes)
    return None


def batch_size_of(loader: Any, split_batches: bool, num_processes: int) -> int | None:
    """The per-process batch size a dataloader yields, or ``None`` if it does not say.

    Example:
        >>> loader = torch.utils.data.DataLoader(list(range(10)), batch_size=4)
        >>> batch_size_of(loader, split_batches=False, num_processes=2)
        4
    """
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    if not isinstance(size, int):
        return None
    return size // num_processes if split_batches else size


def fill_from_prepare(
    plugin: DeepSpeedPlugin,
    *,
    model: torch.nn.Module | None,
    optimizer: Any,
    scheduler: Any,
    micro_batch_size: int | None,
    batch_source: str,
    gradient_accumulation_steps: int,
    num_processes: int,
) -> dict[str, Any]:
    """Fill ``plugin``'s config from one ``prepare`` call and return it, every ``"auto"``
    resolved (``ValueError`` naming the open ones otherwise).

    Example:
        >>> config = fill_from_prepare(plugin, model=model, optimizer=opt, scheduler=None,  # doctest: +SKIP
        ...     micro_batch_size=8, batch_source="the dataloader", gradient_accumulation_steps=1,
        ...     num_processes=2)
    """
    config = plugin.hf_ds_config
    facts: dict[str, tuple[Any, str]] = {
        "gradient_accumulation_steps": (
            gradient_accumulation_steps,
            "the Accelerator's gradient_accumulation_steps",
        ),
        "train_micro_batch_size_per_gpu": (micro_batch_size, batch_source),
    }
    lr = None
    defaults_only: set[str] = set()  # keys filled from a dummy's default value
    if isinstance(optimizer, DummyOptim):
        if not config.has("optimizer"):
            raise ValueError(
                f'a DummyOptim was passed to prepare() but {config.origin} has no "optimizer" '
                "section; add one, or pass a real torch optimizer"
            )
        lr = optimizer.lr
        facts["optimizer.params.lr"] = (optimizer.lr, "DummyOptim(lr=...)")
        facts["optimizer.params.weight_decay"] = (
            optimizer.weight_decay,
            "DummyOptim(weight_decay=...)",
        )
        for key, value in optimizer.kwargs.items():
            facts[f"optimizer.params.{key}"] = (value, f"DummyOptim({key}=...)")
        defaults_only |= {
            f"optimizer.params.{name}" for name in {"lr", "weight_decay"} - optimizer.given
        }
    elif optimizer is not None:
        if config.has("optimizer"):
            raise ValueError(
                f'{config.origin} defines an "optimizer" section and prepare() got the '
                f"optimizer {type(optimizer).__name__}: keep one; to use the config's, pass "
                "accel.deepspeed.DummyOptim(model.parameters(), lr=...) instead"
            )
        lr = optimizer.param_groups[0]["lr"] if optimizer.param_groups else None
    if isinstance(scheduler, DummyScheduler):
        if not config.has("scheduler") and scheduler.lr_scheduler_callable is None:
            raise ValueError(
                f"a DummyScheduler was passed to prepare() but {config.origin} has no "
                '"scheduler" section; add one, or give DummyScheduler(lr_scheduler_callable=...)'
            )
        facts["scheduler.params.warmup_num_steps"] = (
            scheduler.warmup_num_steps,
            "DummyScheduler(warmup_num_steps=...)",
        )
        facts["scheduler.params.total_num_steps"] = (
            scheduler.total_num_steps,
            "DummyScheduler(total_num_steps=...)",
        )
        for key, value in scheduler.kwargs.items():
            facts[f"scheduler.params.{key}"] = (value, f"DummyScheduler({key}=...)")
        if "warmup_num_steps" not in scheduler.given:
            defaults_only.add("scheduler.params.warmup_num_steps")
    elif scheduler is not None and config.has("scheduler"):
        raise ValueError(
            f'{config.origin} defines a "scheduler" section and prepare() got the scheduler '
            f"{type(scheduler).__name__}: keep one; to use the config's, pass "
            "accel.deepspeed.DummyScheduler(optimizer, ...) instead"
        )
    explicit = {key: fact for key, fact in facts.items() if key not in defaults_only}
    config.fill(explicit, must_match=True)
    config.fill({key: facts[key] for key in defaults_only}, must_match=False)

    micro = config.get_value("train_micro_batch_size_per_gpu")
    total = config.get_value("train_batch_size")
    if micro == AUTO and isinstance(total, int):
        per_step = gradient_accumulation_steps * num_processes
        config.fill(
            {
                "train_micro_batch_size_per_gpu": (
                    total // per_step,
                    f"train_batch_size={total} / ({gradient_accumulation_steps} accumulation "
                    f"steps x {num_processes} processes)",
                )
            }
        )
        micro = config.get_value("train_micro_batch_size_per_gpu")
    if isinstance(micro, int):
        config.fill(
            {
                "train_batch_size": (
                    micro * gradient_accumulation_steps * num_processes,
                    f"micro batch {micro} x {gradient_accumulation_steps} accumulation steps x "
                    f"{num_processes} processes",
                )
            },
            must_match=True,
        )

    defaults: dict[str, tuple[Any, str]] = {
        "gradient_clipping": (
            plugin.gradient_clipping if plugin.gradient_clipping is not None else 1.0,
            plugin.sources.get("gradient_clipping", "the default 1.0"),
        ),
        "zero_optimization.stage3_gather_16bit_weights_on_model_save": (
            bool(plugin.zero3_save_16bit_model),
            plugin.sources.get("zero3_save_16bit_model", "the default false"),
        ),
        "scheduler.params.warmup_max_lr": (lr, "the optimizer's lr"),
        "scheduler.params.warmup_min_lr": (0, "the default 0"),
    }
    hidden = hidden_size(model)
    if hidden is not None:
        source = f"{type(model).__name__}.config.hidden_size={hidden}"
        defaults["zero_optimization.reduce_bucket_size"] = (hidden * hidden, source)
        defaults["zero_optimization.stage3_prefetch_bucket_size"] = (
            int(0.9 * hidden * hidden),
            source,
        )
        defaults["zero_optimization.stage3_param_persistence_threshold"] = (10 * hidden, source)
    config.fill(defaults, must_match=False)
    if (
        optimizer is not None
        and not isinstance(optimizer, DummyOptim)
        and not config.has("zero_allow_untested_optimizer")
    ):
        # DeepSpeed asks for this flag before using a torch optimizer of the script's under
        # ZeRO; Accelerate sets it too.
        config.set_value("zero_allow_untested_optimizer", True)

    _check_batch_sizes(config, num_processes)
    config.check_resolved()
    return config.config


def _check_batch_sizes(config: Any, num_processes: int) -> None:
    micro = config.get_value("train_micro_batch_size_per_gpu")
    total = config.get_value("train_batch_size")
    steps = config.get_value("gradient_accumulation_steps")
    if not all(isinstance(v, int) and v != AUTO for v in (micro, total, steps)):
        return
    if micro * steps * num_processes != total:
        raise ValueError(
            f"{config.origin}: train_batch_size={total} must equal "
            f"train_micro_batch_size_per_gpu={micro} x gradient_accumulation_steps={steps} x "
            f"{num_processes} processes = {micro * steps * num_processes}; set train_batch_size "
            'to "auto"'
        )
