"""Gradients accumulated so far in an unfinished accumulation window, saved with a checkpoint.

With ``gradient_accumulation_steps=N``, a checkpoint taken after batch 3 of a window of 4
holds an optimizer that has not stepped yet and gradients that hold 3 batches' worth. Without
them the resumed run would step on 1 batch of gradients instead of 4: Accelerate saves only
the step counter, so its resumed window is short. accel writes each process's accumulated
gradients (they differ between processes until the window's synchronizing step) into
``accel_gradients_{rank}.safetensors``, only when the save falls inside a window, and puts
them back on load. Accelerate ignores the file.

Example:
    >>> accelerator.save_state("ckpt")  # doctest: +SKIP
    >>> accelerator.load_state("ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from safetensors.torch import load_file

from accel.core.checkpoint.context import CheckpointContext
from accel.core.checkpoint.writer import CheckpointFile

__all__ = ["gradients_file", "gradients_file_name", "load_accumulated_gradients"]

_STEM = "accel_gradients"


def gradients_file_name(rank: int) -> str:
    """The file name of process ``rank``'s accumulated gradients.

    Example:
        >>> gradients_file_name(1)
        'accel_gradients_1.safetensors'
    """
    return f"{_STEM}_{rank}.safetensors"


def _named_parameters(context: CheckpointContext) -> Iterator[tuple[str, torch.nn.Parameter]]:
    for index, model in enumerate(context.models):
        target = context.unwrap_model(model)
        for name, parameter in target.named_parameters():
            yield f"{index}.{name}", parameter


def _mid_window(context: CheckpointContext) -> bool:
    steps = context.accumulation_steps
    return steps > 1 and context.step % steps != 0


def _local(tensor: torch.Tensor) -> torch.Tensor:
    if hasattr(tensor, "to_local"):  # a DTensor (FSDP2): this process's shard
        from torch.distributed.tensor import DTensor

        if isinstance(tensor, DTensor):
            tensor = tensor.to_local()
    return tensor.detach()


def gradients_file(context: CheckpointContext) -> CheckpointFile | None:
    """This process's accumulated gradients as a checkpoint file, or ``None`` when the save
    is not inside an accumulation window (or no parameter holds a gradient).

    Example:
        >>> model = torch.nn.Linear(1, 1)
        >>> model(torch.ones(1, 1)).sum().backward()
        >>> gradients_file(CheckpointContext(models=[model], step=1, accumulation_steps=2)).name
        'accel_gradients_0.safetensors'
    """
    if not _mid_window(context):
        return None
    grads = {
        name: _local(parameter.grad).contiguous()
        for name, parameter in _named_parameters(context)
        if parameter.grad is not None
    }
    if not grads:
        return None
    return CheckpointFile(gradients_file_name(context.process_index), grads, "safetensors")


def _assign(parameter: torch.nn.Parameter, local: torch.Tensor) -> None:
    if hasattr(parameter, "device_mesh") and hasattr(parameter, "placements"):
        from torch.distributed.tensor import DTensor

        assert isinstance(parameter, DTensor)  # an FSDP2 parameter: a DTensor shard
        value: Any = DTensor.from_local(
            local.to(parameter.to_local().device, parameter.dtype),
            parameter.device_mesh,
            parameter.placements,
            run_check=False,
        )
    else:
        value = local.to(parameter.device, parameter.dtype)
    if parameter.grad is None:
        parameter.grad = value
    else:
        parameter.grad.copy_(value)


def load_accumulated_gradients(context: CheckpointContext, folder: str) -> bool:
    """Put back the gradients of ``folder``'s ``accel_gradients_{rank}.safetensors``, if the
    checkpoint has one for this process; returns whether it had.

    Raises ``ValueError`` naming the file when its names or shapes do not match the models.

    Example:
        >>> load_accumulated_gradients(context, "ckpt")  # doctest: +SKIP
        True
    """
    path = os.path.join(folder, gradients_file_name(context.process_index))
    if not os.path.isfile(path):
        return False
    saved = load_file(path)
    parameters = dict(_named_parameters(context))
    unknown = sorted(set(saved) - set(parameters))
    wrong = [
        f"{name} {tuple(tensor.shape)} vs {tuple(_local(parameters[name]).shape)}"
        for name, tensor in saved.items()
        if name in parameters and tensor.shape != _local(parameters[name]).shape
    ]
    if unknown or wrong:
        raise ValueError(
            f"the accumulated gradients in {path!r} do not match the prepared models: "
            f"unknown parameters {unknown[:5]}, wrong shapes {wrong[:5]}. Prepare the same "
            "models, in the same order, as in the run that saved the checkpoint."
        )
    for name, tensor in saved.items():
        _assign(parameters[name], tensor)
    return True
