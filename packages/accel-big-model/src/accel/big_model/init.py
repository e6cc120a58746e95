"""Creating models without allocating their weights (meta device) or directly on a device."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from accel.big_model.meta_normal import skip_meta_normal
from accel.state import env

#: ``ACCEL_INIT_INCLUDE_BUFFERS`` (or Accelerate's ``ACCELERATE_INIT_INCLUDE_BUFFERS``) sets the
#: default of ``include_buffers``.
INIT_INCLUDE_BUFFERS = "INIT_INCLUDE_BUFFERS"


@contextmanager
def init_empty_weights(include_buffers: bool | None = None) -> Iterator[None]:
    """Create models inside this block with their parameters on the meta device (no memory).

    Buffers stay real (on CPU) unless ``include_buffers=True``, in which case every tensor
    created in the block, buffers included, is on the meta device. The default comes from
    ``ACCEL_INIT_INCLUDE_BUFFERS`` (false when unset). Load weights afterwards with
    ``load_checkpoint_and_dispatch`` or :func:`set_module_tensor_to_device`.

    Example:
        >>> with init_empty_weights():
        ...     model = nn.Sequential(*[nn.Linear(10_000, 10_000) for _ in range(100)])
        >>> model[0].weight.device
        device(type='meta')
    """
    with init_on_device(torch.device("meta"), include_buffers=include_buffers):
        yield


@contextmanager
def init_on_device(
    device: torch.device | str, include_buffers: bool | None = None
) -> Iterator[None]:
    """Create the parameters of models built inside this block directly on ``device``.

    With ``include_buffers=True`` buffers, and any other tensor the block creates, go there
    too. Parameter subclasses keep their class and attributes, and assigning a parameter that
    is already on ``device`` (tying weights) keeps the tie. The previous
    behaviour is restored on exit, also after an exception.
    Nesting a real device inside ``"meta"`` cannot work (meta tensors have no data).
    On ``"meta"``, while ``torch._dynamo`` is not imported, ``normal_`` calls on meta tensors
    return at once: they have nothing to fill, and torch's meta ``normal_`` would import
    ``torch._dynamo``, seconds of CPU (:mod:`accel.big_model.meta_normal`).

    Example:
        >>> with init_on_device("meta"):
        ...     layer = nn.BatchNorm1d(4)
        >>> layer.weight.device.type, layer.running_mean.device.type
        ('meta', 'cpu')
    """
    if include_buffers is None:
        include_buffers = env.read_flag(INIT_INCLUDE_BUFFERS, False)
    device = torch.device(device)
    original_register_parameter = nn.Module.register_parameter
    original_register_buffer = nn.Module.register_buffer

    def register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original_register_parameter(module, name, param)
        current = module._parameters[name]
        if param is None or current is None or current.device == device:
            return  # keeps ties made inside the block (``head.weight = embed.weight``)
        attributes = dict(current.__dict__)
        hf_flag = attributes.pop("_is_hf_initialized", None)
        attributes["requires_grad"] = param.requires_grad
        parameter_class: Callable[..., nn.Parameter] = type(current)
        moved = parameter_class(current.to(device), **attributes)
        if hf_flag is not None:
            vars(moved)["_is_hf_initialized"] = hf_flag
        module._parameters[name] = moved

    def register_buffer(
        module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True
    ) -> None:
        original_register_buffer(module, name, tensor, persistent=persistent)
        registered = module._buffers[name]
        if registered is not None:
            module._buffers[name] = registered.to(device)

    # Patched on the class, as Accelerate does, so modules built in the block use them.
    setattr(nn.Module, "register_parameter", register_parameter)  # noqa: B010
    if include_buffers:
        setattr(nn.Module, "register_buffer", register_buffer)  # noqa: B010
    try:
        with ExitStack() as stack:
            if device.type == "meta":
                stack.enter_context(skip_meta_normal())
            if include_buffers:
                stack.enter_context(device)
            yield
    finally:
        nn.Module.register_parameter = original_register_parameter
        nn.Module.register_buffer = original_register_buffer
