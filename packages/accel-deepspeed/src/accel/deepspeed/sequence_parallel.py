"""DeepSpeed's Ulysses sequence parallelism (ALST) for ``ParallelismConfig(sp_size > 1)``.

The ``sp_size`` processes of one sequence-parallel group share each sample: every rank holds
``1/sp_size`` of the sequence, and the attention layers of a transformers model exchange heads
for sequence chunks with an all-to-all (``deepspeed.runtime.sequence_parallel.ulysses_sp``), so
each rank attends over the whole sequence for ``1/sp_size`` of the heads. The other ranks form
DeepSpeed's data-parallel groups (ZeRO shards over them).

:func:`register_ulysses` swaps the model's attention for Ulysses' and creates DeepSpeed's
sequence/data-parallel groups (the ``mpu`` handed to ``deepspeed.initialize``);
:func:`wrap_loader` wraps a prepared dataloader in ``UlyssesSPDataLoaderAdapter``, which
gathers one batch from each rank of the group and hands every rank its sequence chunk of each,
in turn, with ``labels`` replaced by pre-shifted ``shift_labels``. The loss over the full
sequence is the token-weighted mean of the ranks' losses (see ``docs/parallelism.md``).

Example:
    >>> from accel.core import ParallelismConfig
    >>> sequence_parallel_size(ParallelismConfig(sp_size=2))
    2
"""

from __future__ import annotations

from typing import Any

import torch

from accel.deepspeed.availability import require_deepspeed


def sequence_parallel_size(parallelism_config: Any) -> int:
    """``sp_size`` of ``parallelism_config`` (1 without one, or when it is off).

    Example:
        >>> sequence_parallel_size(None)
        1
    """
    if parallelism_config is None or not parallelism_config.sp_enabled:
        return 1
    return int(parallelism_config.sp_size)


def register_ulysses(model: torch.nn.Module, parallelism_config: Any, micro_batch_size: int) -> Any:
    """Route ``model``'s attention through Ulysses and create DeepSpeed's sequence-parallel
    groups; returns the ``mpu`` module for ``deepspeed.initialize(mpu=...)``.

    The attention implementation is the handler's ``sp_attn_implementation``, else the model's
    own ``config._attn_implementation``; DeepSpeed refuses ``eager`` and a mismatch.

    Example:
        >>> from accel.core import ParallelismConfig
        >>> register_ulysses(torch.nn.Linear(2, 2), ParallelismConfig(sp_size=2), 1)
        Traceback (most recent call last):
        ...
        ValueError: ParallelismConfig(sp_size=2) runs DeepSpeed Ulysses, which replaces the attention of a transformers model; Linear has no `config` (it is not a transformers PreTrainedModel)
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(
            f"ParallelismConfig(sp_size={parallelism_config.sp_size}) runs DeepSpeed Ulysses, "
            f"which replaces the attention of a transformers model; {type(model).__name__} has no "
            "`config` (it is not a transformers PreTrainedModel)"
        )
    require_deepspeed()
    handler = parallelism_config.sp_handler
    attention = handler.sp_attn_implementation or getattr(config, "_attn_implementation", None)
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF

    _undo_earlier_registration(attention)
    mpu = UlyssesSPAttentionHF.register_with_transformers(
        model_name_or_path=model,
        core_attn_implementation=attention,
        sequence_parallel_size=parallelism_config.sp_size,
        micro_batch_size=micro_batch_size,
        seq_length=handler.sp_seq_length,
        seq_length_is_variable=handler.sp_seq_length_is_variable,
        disable_in_eval=True,
    )
    if attention in _ORIGINAL:
        _REPLACED[attention] = _attention_functions()[attention]
    return mpu


# attention name -> the core function Ulysses wrapped; -> the wrapper it put in its place
_ORIGINAL: dict[str, Any] = {}
_REPLACED: dict[str, Any] = {}


def _attention_functions() -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS


def _undo_earlier_registration(attention: str | None) -> None:
    """Let Ulysses register again in this process (a second ``prepare``, or a new
    ``Accelerator`` after ``reset_state``): DeepSpeed asserts its sequence-parallel groups are
    new, and would wrap its own wrapper of ``attention`` (a nested all-to-all). The groups are
    made anew (collective: every rank prepares) and the core attention function restored."""
    import deepspeed.runtime.sequence_parallel.parallel_state_sp as state

    state._SEQUENCE_PARALLEL_GROUP = None
    state._SEQUENCE_DATA_PARALLEL_GROUP = None
    functions = _attention_functions()
    if attention is None or attention not in functions:
        return
    if functions[attention] is _REPLACED.get(attention):
        functions[attention] = _ORIGINAL[attention]
    else:
        _ORIGINAL[attention] = functions[attention]


def current_mpu() -> Any:
    """DeepSpeed's sequence-parallel state module once :func:`register_ulysses` ran, else
    ``None``.

    Example:
        >>> current_mpu().get_sequence_parallel_world_size()  # doctest: +SKIP
        2
    """
    import deepspeed.runtime.sequence_parallel.parallel_state_sp as mpu

    return mpu if getattr(mpu, "_SEQUENCE_PARALLEL_GROUP", None) is not None else None


def wrap_loader(loader: Any, mpu: Any, device: torch.device) -> Any:
    """``loader`` wrapped in DeepSpeed's ``UlyssesSPDataLoaderAdapter`` for the group of
    ``mpu``: ``sp_size`` times as many batches, each the rank's chunk of the sequence.
    Batches must be dicts with ``input_ids``, ``position_ids`` and ``labels``.

    Example:
        >>> loader = wrap_loader(loader, current_mpu(), accelerator.device)  # doctest: +SKIP
    """
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPDataLoaderAdapter

    return UlyssesSPDataLoaderAdapter(
        loader,
        sp_rank=mpu.get_sequence_parallel_rank(),
        sp_group=mpu.get_sequence_parallel_group(),
        sp_world_size=mpu.get_sequence_parallel_world_size(),
        device=device,
    )


def refuse_partly_dealt_chunks(loaders: list[Any]) -> None:
    """Raise if a Ulysses-wrapped loader still holds chunks of its last refill: the saved
    dataloader position counts the wrapped loader's batches, so a resumed run would skip them.
    Saving after a multiple of ``sp_size`` steps of each pass is exact.

    Example:
        >>> refuse_partly_dealt_chunks([])  # nothing pending
    """
    for loader in loaders:
        pending = len(loader.micro_batches)
        if pending:
            size = loader.sp_world_size
            raise ValueError(
                f"save_state under sequence parallelism (sp_size={size}) with {pending} of the "
                f"{size} sequence chunks of the current batches not yet trained on: the "
                "checkpoint records whole batches of the wrapped dataloader, so a resumed run "
                f"would skip them; save after a multiple of {size} steps of each pass"
            )
