"""FSDP model and optimizer checkpoints in Accelerate's file layout, plus FSDP option names.

``save_fsdp_model``/``load_fsdp_model`` and the optimizer pair write and read what
Accelerate's functions of the same names do: with ``state_dict_type="FULL_STATE_DICT"`` one
``pytorch_model_fsdp[_i].bin`` / ``optimizer[_i].bin`` written by rank 0; with
``"SHARDED_STATE_DICT"`` a ``torch.distributed.checkpoint`` folder ``pytorch_model_fsdp_{i}``
/ ``optimizer_{i}`` (``use_dcp=False``: one ``..._rank{r}.bin`` per process). They work on
FSDP2 models and on plain modules. Every process must call them. Loads never run code
from the file (``weights_only``).

Example:
    >>> import tempfile, torch
    >>> from accel.core import Accelerator, FullyShardedDataParallelPlugin
    >>> from accel.core.checkpoint.fsdp import save_fsdp_model, load_fsdp_model
    >>> accelerator, model = Accelerator(), torch.nn.Linear(2, 2)
    >>> folder = tempfile.mkdtemp()
    >>> save_fsdp_model(FullyShardedDataParallelPlugin(), accelerator, model, folder)
    >>> load_fsdp_model(FullyShardedDataParallelPlugin(), accelerator, model, folder)
    <All keys matched successfully>
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from accel.core.checkpoint.layout import FSDP_MODEL_NAME, OPTIMIZER_NAME
from accel.core.checkpoint.unpickling import safe_load
from accel.state import options

# Accelerate's constant names over accel-state's value lists (the option table's).
#: Accelerate's FSDP1 option names, as its config questions list them (accel runs FSDP2 and
#: maps FULL_SHARD/SHARD_GRAD_OP onto ``reshard_after_forward``, see the plugin's docs).
FSDP_SHARDING_STRATEGY = list(options.FSDP_SHARDING_STRATEGIES)
#: Auto-wrap policy names accepted by ``FullyShardedDataParallelPlugin(auto_wrap_policy=...)``.
FSDP_AUTO_WRAP_POLICY = list(options.AUTO_WRAP_POLICIES)
#: Backward-prefetch names (FSDP1 option; FSDP2 prefetches on its own).
FSDP_BACKWARD_PREFETCH = list(options.FSDP_BACKWARD_PREFETCH)
#: State-dict layouts ``save_fsdp_model`` writes.
FSDP_STATE_DICT_TYPE = list(options.STATE_DICT_TYPES)
#: Same list under Accelerate's FSDP2 name (in its order).
FSDP2_STATE_DICT_TYPE = ["SHARDED_STATE_DICT", "FULL_STATE_DICT"]


def _layout(fsdp_plugin: Any) -> str:
    raw = "FULL_STATE_DICT" if fsdp_plugin is None else fsdp_plugin.state_dict_type
    name = str(getattr(raw, "name", raw)).upper().split(".")[-1]
    if name not in FSDP_STATE_DICT_TYPE:
        raise ValueError(
            f"fsdp_plugin.state_dict_type={raw!r} is not supported by accel's FSDP checkpoints; "
            f"use one of {', '.join(FSDP_STATE_DICT_TYPE)}"
        )
    return name


def _options(full: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full)


def _peft_required(model: torch.nn.Module) -> Any:
    from accel.core.model_unwrap import extract_model_from_parallel, is_peft_model

    if not is_peft_model(model):
        raise ValueError(
            f"adapter_only=True needs a PEFT model (peft.PeftModel); got {type(model).__name__}"
        )
    return extract_model_from_parallel(model)


def _model_state(model: torch.nn.Module, full: bool, adapter_only: bool) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    peft_model = _peft_required(model) if adapter_only else None
    state = get_model_state_dict(model, options=_options(full))
    if peft_model is not None:
        from peft import get_peft_model_state_dict  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

        state = get_peft_model_state_dict(peft_model, state_dict=state)
    return state


def _set_model_state(
    model: torch.nn.Module, state: dict[str, Any], full: bool, adapter_only: bool
) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if adapter_only:
        from peft import set_peft_model_state_dict  # pyright: ignore[reportMissingImports]  # optional, not in the dev env

        return set_peft_model_state_dict(_peft_required(model), state)
    return set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=full))


def _dcp_folder(folder: str | os.PathLike[str], stem: str, index: int) -> Path:
    folder = Path(folder)
    return folder if folder.name == f"{stem}_{index}" else folder / f"{stem}_{index}"


def _numbered_bin(stem: str, index: int) -> str:
    return f"{stem}.bin" if index == 0 else f"{stem}_{index}.bin"


def save_fsdp_model(
    fsdp_plugin: Any,
    accelerator: Any,
    model: torch.nn.Module,
    output_dir: str | os.PathLike[str],
    model_index: int = 0,
    adapter_only: bool = False,
    use_dcp: bool = True,
) -> None:
    """Write ``model``'s weights to ``output_dir`` in the plugin's ``state_dict_type`` layout.

    Example:
        >>> save_fsdp_model(accelerator.state.fsdp_plugin, accelerator, model, "ckpt")  # doctest: +SKIP
    """
    layout = _layout(fsdp_plugin)
    os.makedirs(output_dir, exist_ok=True)
    full = layout == "FULL_STATE_DICT"
    state = _model_state(model, full, adapter_only)
    if full:
        if accelerator.process_index == 0:
            torch.save(state, os.path.join(output_dir, _numbered_bin(FSDP_MODEL_NAME, model_index)))
    elif use_dcp:
        # from the defining modules: torch.distributed.checkpoint re-exports them without __all__
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

        folder = _dcp_folder(output_dir, FSDP_MODEL_NAME, model_index)
        dcp_save({"model": state}, storage_writer=FileSystemWriter(folder))
    else:
        name = f"{FSDP_MODEL_NAME}_{model_index}_rank{accelerator.process_index}.bin"
        torch.save(state, os.path.join(output_dir, name))
    accelerator.wait_for_everyone()


def load_fsdp_model(
    fsdp_plugin: Any,
    accelerator: Any,
    model: torch.nn.Module,
    input_dir: str | os.PathLike[str],
    model_index: int = 0,
    adapter_only: bool = False,
    use_dcp: bool = True,
) -> Any:
    """Load weights written by :func:`save_fsdp_model` (or Accelerate's) into ``model``;
    returns the missing/unexpected keys.

    Example:
        >>> load_fsdp_model(accelerator.state.fsdp_plugin, accelerator, model, "ckpt")  # doctest: +SKIP
    """
    layout = _layout(fsdp_plugin)
    accelerator.wait_for_everyone()
    full = layout == "FULL_STATE_DICT"
    if full:
        path = os.path.join(input_dir, _numbered_bin(FSDP_MODEL_NAME, model_index))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load_fsdp_model: no {path} (written by save_fsdp_model)")
        state = safe_load(path)
    elif use_dcp:
        # from the defining modules: torch.distributed.checkpoint re-exports them without __all__
        from torch.distributed.checkpoint.filesystem import FileSystemReader
        from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

        folder = _dcp_folder(input_dir, FSDP_MODEL_NAME, model_index)
        holder = {"model": _model_state(model, False, adapter_only)}
        dcp_load(holder, storage_reader=FileSystemReader(folder))
        state = holder["model"]
    else:
        name = f"{FSDP_MODEL_NAME}_{model_index}_rank{accelerator.process_index}.bin"
        state = safe_load(os.path.join(input_dir, name))
    result = _set_model_state(model, state, full, adapter_only)
    accelerator.wait_for_everyone()
    return result


def save_fsdp_optimizer(
    fsdp_plugin: Any,
    accelerator: Any,
    optimizer: torch.optim.Optimizer,
    model: torch.nn.Module,
    output_dir: str | os.PathLike[str],
    optimizer_index: int = 0,
    use_dcp: bool = True,
) -> None:
    """Write ``optimizer``'s state (for ``model``'s parameters) in the plugin's layout.

    Example:
        >>> save_fsdp_optimizer(plugin, accelerator, optimizer, model, "ckpt")  # doctest: +SKIP
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    layout = _layout(fsdp_plugin)
    os.makedirs(output_dir, exist_ok=True)
    full = layout == "FULL_STATE_DICT"
    inner = getattr(optimizer, "optimizer", optimizer)
    state = get_optimizer_state_dict(model, inner, options=_options(full))
    if full:
        if accelerator.process_index == 0:
            torch.save(
                state, os.path.join(output_dir, _numbered_bin(OPTIMIZER_NAME, optimizer_index))
            )
    elif use_dcp:
        # from the defining modules: torch.distributed.checkpoint re-exports them without __all__
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

        folder = _dcp_folder(output_dir, OPTIMIZER_NAME, optimizer_index)
        dcp_save({"optimizer": state}, storage_writer=FileSystemWriter(folder))
    else:
        name = f"{OPTIMIZER_NAME}_{optimizer_index}_rank{accelerator.process_index}.bin"
        torch.save(state, os.path.join(output_dir, name))
    accelerator.wait_for_everyone()


def load_fsdp_optimizer(
    fsdp_plugin: Any,
    accelerator: Any,
    optimizer: torch.optim.Optimizer,
    model: torch.nn.Module,
    input_dir: str | os.PathLike[str],
    optimizer_index: int = 0,
    adapter_only: bool = False,
    use_dcp: bool = True,
) -> None:
    """Load an optimizer state written by :func:`save_fsdp_optimizer` (or Accelerate's).

    ``adapter_only`` is accepted for Accelerate's signature; the optimizer state holds exactly
    the parameters the optimizer was built with, adapters or not.

    Example:
        >>> load_fsdp_optimizer(plugin, accelerator, optimizer, model, "ckpt")  # doctest: +SKIP
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    if adapter_only:
        _peft_required(model)
    layout = _layout(fsdp_plugin)
    accelerator.wait_for_everyone()
    full = layout == "FULL_STATE_DICT"
    inner = getattr(optimizer, "optimizer", optimizer)
    if full:
        path = os.path.join(input_dir, _numbered_bin(OPTIMIZER_NAME, optimizer_index))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"load_fsdp_optimizer: no {path} (written by save_fsdp_optimizer)"
            )
        state = safe_load(path)
    elif use_dcp:
        # from the defining modules: torch.distributed.checkpoint re-exports them without __all__
        from torch.distributed.checkpoint.filesystem import FileSystemReader
        from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

        folder = _dcp_folder(input_dir, OPTIMIZER_NAME, optimizer_index)
        holder = {"optimizer": get_optimizer_state_dict(model, inner, options=_options(False))}
        dcp_load(holder, storage_reader=FileSystemReader(folder))
        state = holder["optimizer"]
    else:
        name = f"{OPTIMIZER_NAME}_{optimizer_index}_rank{accelerator.process_index}.bin"
        state = safe_load(os.path.join(input_dir, name))
    set_optimizer_state_dict(
        model, inner, optim_state_dict=state, options=StateDictOptions(full_state_dict=full)
    )
    accelerator.wait_for_everyone()


def get_parameters_from_modules(
    modules: Iterable[torch.nn.Module] | str | None,
    model: torch.nn.Module,
    device: torch.device | str,
) -> set[torch.nn.Parameter]:
    """The parameters of ``modules``: given as modules, or as a regex matched in full against
    ``model``'s submodule names (matched modules are moved to ``device``). ``None`` gives an
    empty set.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> len(get_parameters_from_modules("1", net, "cpu"))
        2
    """
    if modules is None:
        return set()
    if isinstance(modules, str):
        try:
            pattern = re.compile(modules)
        except re.error as error:
            raise ValueError(
                f"modules={modules!r} is not a valid regular expression: {error}"
            ) from None
        matched = [m for name, m in model.named_modules() if pattern.fullmatch(name)]
        for module in matched:
            module.to(device)
        modules = matched
    return {p for module in modules for p in module.parameters()}
