"""Quantized loading: replace ``nn.Linear`` layers by 8-bit / 4-bit ones and load weights.

Two backends behind one :class:`~accel.big_model.quant_config.BnbQuantizationConfig`:

- ``backend="bitsandbytes"`` (default, as in Accelerate): ``bnb.nn.Linear8bitLt`` /
  ``bnb.nn.Linear4bit``. Needs ``pip install accel-big-model[quantization]``. Unlike
  Accelerate, a machine without a GPU is not an error: bitsandbytes >= 0.45 has a CPU backend,
  and the model is placed on the CPU.
- ``backend="torch"``: accel's :class:`~accel.big_model.weight_only.WeightOnlyLinear` (int8
  per channel or int4 per group, dequantized in forward). No extra package; any device.

Example:
    >>> import torch
    >>> from accel.big_model import init_empty_weights, save_sharded_safetensors
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_sharded_safetensors(torch.nn.Sequential(torch.nn.Linear(64, 64)).state_dict(), folder)
    >>> with init_empty_weights():
    ...     model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    >>> config = BnbQuantizationConfig(load_in_8bit=True, backend="torch", skip_modules=[])
    >>> model = load_and_quantize_model(model, config, weights_location=folder, device_map="cpu")
    >>> model[0].weight.dtype
    torch.int8
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from accel.big_model.checkpoint import checkpoint_files, load_state_dict
from accel.big_model.device_lookup import device_for
from accel.big_model.device_map import resolve_device_map
from accel.big_model.dispatch import dispatch_model
from accel.big_model.init import init_empty_weights
from accel.big_model.offload import offload_weight, save_offload_index
from accel.big_model.quant_config import BnbQuantizationConfig
from accel.big_model.tensors import set_module_tensor_to_device
from accel.big_model.tied import find_tied_parameters, retie_parameters
from accel.big_model.weight_only import WeightOnlyLinear
from accel.state.process_logging import library_logger

logger = library_logger(__name__)

PathLike = str | os.PathLike

__all__ = [
    "BnbQuantizationConfig",
    "get_keys_to_not_convert",
    "has_4bit_bnb_layers",
    "is_bnb_available",
    "load_and_quantize_model",
    "replace_with_bnb_layers",
]


def is_bnb_available() -> bool:
    """Whether ``bitsandbytes`` can be imported (it is imported to check).

    Example:
        >>> isinstance(is_bnb_available(), bool)
        True
    """
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def _bnb() -> Any:
    try:
        import bitsandbytes as bnb
    except Exception as err:
        raise ImportError(
            "BnbQuantizationConfig(backend='bitsandbytes') needs bitsandbytes>=0.45 "
            f"({type(err).__name__}: {err}); install it with "
            "`pip install accel-big-model[quantization]`, or pass backend='torch' to use "
            "accel's pure-torch int8/int4 layers"
        ) from None
    return bnb


def _quantized_types(config: BnbQuantizationConfig) -> tuple[type, ...]:
    if config.backend == "torch":
        return (WeightOnlyLinear,)
    bnb = _bnb()
    return (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)


def _skipped(full_name: str, name: str, modules_to_not_convert: list[str]) -> bool:
    # Accelerate's rule: the child's own name, the full name, or a parent "key." in it.
    if name in modules_to_not_convert:
        return True
    return any(key == full_name or f"{key}." in full_name for key in modules_to_not_convert)


def _empty_quantized_linear(linear: nn.Linear, config: BnbQuantizationConfig) -> nn.Module:
    has_bias = linear.bias is not None
    with init_empty_weights():
        if config.backend == "torch":
            bits = 8 if config.load_in_8bit else 4
            return WeightOnlyLinear(linear.in_features, linear.out_features, has_bias, bits=bits)
        bnb = _bnb()
        if config.load_in_8bit:
            return bnb.nn.Linear8bitLt(
                linear.in_features,
                linear.out_features,
                has_bias,
                has_fp16_weights=False,
                threshold=config.llm_int8_threshold,
            )
        return bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            has_bias,
            config.bnb_4bit_compute_dtype,
            compress_statistics=config.bnb_4bit_use_double_quant,
            quant_type=config.bnb_4bit_quant_type,
        )


def _set_quantized_weight(
    module: nn.Module, weight: torch.Tensor, device: Any, config: BnbQuantizationConfig
) -> None:
    """Quantize the float ``weight`` into ``module`` (a quantized layer) on ``device``."""
    if not weight.is_floating_point():
        raise ValueError(
            f"cannot quantize a {weight.dtype} weight: load_and_quantize_model reads "
            f"full-precision checkpoints only (not pre-quantized ones)"
        )
    weight = weight.detach()
    if isinstance(module, WeightOnlyLinear):
        module.set_weight(weight.to(device))
        return
    bnb = _bnb()
    host = weight.to("cpu")  # bitsandbytes quantizes while moving a CPU tensor to ``device``
    if isinstance(module, bnb.nn.Linear8bitLt):
        param = bnb.nn.Int8Params(host, requires_grad=False, has_fp16_weights=False)
    else:
        param = bnb.nn.Params4bit(
            host.to(config.torch_dtype),
            requires_grad=False,
            quant_type=config.bnb_4bit_quant_type,
            compress_statistics=config.bnb_4bit_use_double_quant,
            module=module,
        )
    module.weight = param.to(device)


def replace_with_bnb_layers(
    model: nn.Module,
    bnb_quantization_config: BnbQuantizationConfig,
    modules_to_not_convert: list[str] | None = None,
    current_key_name: list[str] | None = None,
) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by its quantized counterpart.

    Modules named in ``modules_to_not_convert`` (a child name, a full dotted name, or a parent
    of it) are kept. Layers whose weights are on the meta device stay empty (filled later by
    :func:`load_and_quantize_model`); real weights are quantized right away on their device
    (Accelerate postpones that to ``model.cuda()``). Returns ``model``.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> config = BnbQuantizationConfig(load_in_8bit=True, backend="torch")
        >>> model = replace_with_bnb_layers(model, config, modules_to_not_convert=["2"])
        >>> type(model[0]).__name__, type(model[2]).__name__
        ('WeightOnlyLinear', 'Linear')
    """
    skip = list(modules_to_not_convert or [])
    if not _replace(model, bnb_quantization_config, skip, list(current_key_name or [])):
        logger.warning(
            "No nn.Linear layer was quantized: the model has none outside %s (some "
            "architectures, e.g. GPT-2, use Conv1D instead of Linear)",
            skip,
        )
    return model


def _replace(
    model: nn.Module, config: BnbQuantizationConfig, skip: list[str], prefix: list[str]
) -> bool:
    replaced = False
    for name, module in model.named_children():
        path = [*prefix, name]
        full_name = ".".join(path)
        if type(module) is nn.Linear and not _skipped(full_name, name, skip):
            new = _empty_quantized_linear(module, config)
            if module.weight.device.type != "meta":
                _set_quantized_weight(new, module.weight, module.weight.device, config)
            if module.bias is not None:
                new.bias = nn.Parameter(module.bias.detach(), requires_grad=False)
            new.requires_grad_(False)
            setattr(model, name, new)
            replaced = True
        elif any(True for _ in module.children()):
            replaced = _replace(module, config, skip, path) or replaced
    return replaced


def get_keys_to_not_convert(model: nn.Module) -> list[str]:
    """Module names to keep unquantized by default: tied weights and the last child (the head).

    A transformers base model (``base_model_prefix`` set but not an attribute of it) without
    tied weights has no head, so nothing is kept. Names are returned sorted.

    Example:
        >>> get_keys_to_not_convert(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
        ['1']
    """
    tied_keys = [name for group in find_tied_parameters(model) for name in group]
    prefix = getattr(model, "base_model_prefix", None)
    is_base_model = prefix is not None and not hasattr(model, prefix)
    if not tied_keys and is_base_model:
        return []
    children = [name for name, _ in model.named_children()]
    names = set(tied_keys) | (set(children[-1:]) - set(tied_keys))
    cleaned = set()
    for name in names:
        for suffix in (".weight", ".bias"):
            name = name.removesuffix(suffix)
        cleaned.add(name)
    return sorted(cleaned)


def has_4bit_bnb_layers(model: nn.Module) -> bool:
    """Whether ``model`` holds a 4-bit quantized layer (bitsandbytes' or accel's).

    Example:
        >>> has_4bit_bnb_layers(nn.Sequential(WeightOnlyLinear(4, 4, bits=4)))
        True
    """
    for module in model.modules():
        if isinstance(module, WeightOnlyLinear) and module.bits == 4:
            return True
        if type(module).__name__ == "Linear4bit" and type(module).__module__.startswith(
            "bitsandbytes"
        ):
            return True
    return False


def _default_device() -> Any:
    for kind in ("cuda", "xpu"):
        backend = getattr(torch, kind, None)
        if backend is not None and backend.is_available():
            return backend.current_device()
    return "cpu"


def _matches(name: str, keys: list[str]) -> bool:
    return any(key in name for key in keys)  # Accelerate's substring rule


def _special_dtypes(model: nn.Module, config: BnbQuantizationConfig) -> dict[str, torch.dtype]:
    special: dict[str, torch.dtype] = {}
    for name, _ in model.named_parameters():
        if _matches(name, config.keep_in_fp32_modules or []):
            special[name] = torch.float32
        elif _matches(name, config.skip_modules or []):
            special[name] = config.torch_dtype
    return special


def _quantized_device_map(
    model: nn.Module,
    config: BnbQuantizationConfig,
    device_map: Any,
    max_memory: Any,
    no_split_module_classes: list[str] | None,
) -> dict[str, Any]:
    if device_map is None:
        device_map = _default_device()
    result = dict(
        resolve_device_map(
            model,
            device_map,
            max_memory=max_memory,
            no_split_module_classes=no_split_module_classes,
            dtype=config.target_dtype,
            special_dtypes=_special_dtypes(model, config),
        )
    )
    kinds = _quantized_types(config)
    accelerators = [d for d in result.values() if d not in ("cpu", "disk")]
    offloaded = ("disk",) if not accelerators else ("cpu", "disk")
    bad = [
        f"{name} -> {device_for(result, name, None)!r}"
        for name, module in model.named_modules()
        if isinstance(module, kinds) and device_for(result, name, None) in offloaded
    ]
    if bad and (config.backend == "bitsandbytes" or "disk" in str(bad)):
        raise ValueError(
            "quantized layers cannot be offloaded with "
            f"backend={config.backend!r}: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. "
            "Give them room on an execution device (max_memory), keep them unquantized with "
            "skip_modules=[...], or use backend='torch', whose layers can be offloaded to CPU"
        )
    return result


def _load_weights(
    model: nn.Module,
    weights_location: PathLike,
    device_map: Mapping[str, Any],
    config: BnbQuantizationConfig,
    offload_folder: PathLike | None,
) -> None:
    """Read the checkpoint shard by shard, quantizing the weights of quantized layers."""
    kinds = _quantized_types(config)
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, kinds)}
    names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    names |= {name for name, _ in model.named_buffers()}
    derived = {f"{name}.weight_scale" for name in quantized}  # computed, not read
    tied = find_tied_parameters(model)
    keep = config.keep_in_fp32_modules or []
    offload_index: dict[str, dict[str, Any]] = {}
    loaded: set[str] = set()
    unexpected: list[str] = []
    for path in checkpoint_files(weights_location):
        for key, value in load_state_dict(path).items():
            module_name, _, tensor_name = key.rpartition(".")
            device = device_for(device_map, key, None)
            if key not in names or device is None:
                unexpected.append(key)
                continue
            loaded.add(key)
            if module_name in quantized and tensor_name == "weight":
                _set_quantized_weight(quantized[module_name], value, device, config)
                continue
            dtype = None
            if value.is_floating_point():
                dtype = torch.float32 if _matches(key, keep) else config.torch_dtype
            if device == "disk":
                if offload_folder is None:
                    raise ValueError(
                        f"{key!r} is mapped to 'disk': pass offload_folder= to write it to"
                    )
                offload_weight(value.to(dtype or value.dtype), key, offload_folder, offload_index)
                set_module_tensor_to_device(model, key, "meta", dtype=dtype)
            else:
                set_module_tensor_to_device(model, key, device, value=value, dtype=dtype)
    retie_parameters(model, tied)
    if offload_index:
        save_offload_index(offload_index, offload_folder)  # type: ignore[arg-type]
    if unexpected:
        logger.warning("Weights of %s not used by the model: %s", weights_location, unexpected)
    missing = sorted(n for n in names - loaded - derived if not any(n in g for g in tied))
    if missing:
        logger.warning("Weights not found in %s (left as they are): %s", weights_location, missing)


def _cast_loaded(model: nn.Module, config: BnbQuantizationConfig) -> None:
    quantized_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, WeightOnlyLinear)
        for p in (m.weight, m.weight_scale)
    }
    keep = config.keep_in_fp32_modules or []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in quantized_params or not param.is_floating_point():
            continue
        param.data = param.data.to(torch.float32 if _matches(name, keep) else config.torch_dtype)


def load_and_quantize_model(
    model: nn.Module,
    bnb_quantization_config: BnbQuantizationConfig,
    weights_location: PathLike | None = None,
    device_map: Mapping[str, Any] | str | int | None = None,
    no_split_module_classes: list[str] | None = None,
    max_memory: Mapping[Any, int | str] | None = None,
    offload_folder: PathLike | None = None,
    offload_state_dict: bool = False,
) -> nn.Module:
    """Quantize the ``nn.Linear`` layers of ``model`` and load/dispatch its weights.

    - A model on the meta device (built under ``init_empty_weights``): its layers are replaced,
      then ``weights_location`` (a weights file, an ``*.index.json``, or a folder holding one
      of them) is read shard by shard; each quantized layer's weight is quantized on the
      device ``device_map`` gives it, other weights are cast to ``torch_dtype`` (float32 for
      ``keep_in_fp32_modules``); then :func:`~accel.big_model.dispatch.dispatch_model` runs.
    - A loaded model: quantized in place (Accelerate warns this is not recommended; so does
      accel), cast, then moved to the first GPU/XPU, or kept on CPU when there is none.

    ``device_map`` is a dict, ``"auto"``/``"balanced"``/``"balanced_low_0"``/``"sequential"``
    (sized with the quantized dtype), or one device; default: GPU/XPU 0, else ``"cpu"``.
    Non-quantized modules may go to ``"cpu"``/``"disk"`` (``offload_folder`` needed for
    disk); quantized layers cannot be offloaded with bitsandbytes (``ValueError``); with
    ``backend="torch"`` they may be offloaded to CPU. ``offload_state_dict`` is accepted for
    compatibility (shards are read one at a time anyway). Sets ``model.is_loaded_in_8bit`` /
    ``is_loaded_in_4bit``. ``bnb_quantization_config.skip_modules`` defaults to
    :func:`get_keys_to_not_convert`; the config is updated in place, as in Accelerate.

    Example:
        >>> model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 2))
        >>> config = BnbQuantizationConfig(load_in_4bit=True, backend="torch")
        >>> model = load_and_quantize_model(model, config)
        >>> type(model[0]).__name__, type(model[1]).__name__  # the head stays unquantized
        ('WeightOnlyLinear', 'Linear')
    """
    config = bnb_quantization_config
    if not isinstance(config, BnbQuantizationConfig):
        raise TypeError(
            f"bnb_quantization_config must be a BnbQuantizationConfig, got {type(config).__name__}"
        )
    _quantized_types(config)  # fails early when bitsandbytes is missing
    if config.skip_modules is None:
        config.skip_modules = get_keys_to_not_convert(model)
    if config.keep_in_fp32_modules is None:
        config.keep_in_fp32_modules = []
    not_convert = [*config.skip_modules, *config.keep_in_fp32_modules]
    # Plain attributes transformers reads (nn.Module.__setattr__ types only tensors and modules).
    model.__dict__["is_loaded_in_4bit"] = config.load_in_4bit
    model.__dict__["is_loaded_in_8bit"] = config.load_in_8bit

    on_meta = any(p.device.type == "meta" for p in model.parameters())
    if not on_meta:
        logger.warning(
            "Quantizing a model that is already loaded needs its full-precision weights in "
            "memory first; build it under init_empty_weights() and pass weights_location instead"
        )
        replace_with_bnb_layers(model, config, modules_to_not_convert=not_convert)
        _cast_loaded(model, config)
        if device_map is None:
            first = next(model.parameters(), None)
            on_accelerator = first is not None and first.device.type not in ("cpu", "meta")
            return model if on_accelerator else model.to(_default_device())
        device_map = _quantized_device_map(
            model, config, device_map, max_memory, no_split_module_classes
        )
        return dispatch_model(model, device_map=device_map, offload_dir=offload_folder)

    if weights_location is None:
        raise ValueError(
            "weights_location=None: the model is on the meta device, so pass the checkpoint to "
            "load (a weights file, an *.index.json, or a folder holding one)"
        )
    with init_empty_weights():
        replace_with_bnb_layers(model, config, modules_to_not_convert=not_convert)
    device_map = _quantized_device_map(
        model, config, device_map, max_memory, no_split_module_classes
    )
    if offload_folder is not None and "disk" in device_map.values():
        os.makedirs(offload_folder, exist_ok=True)
    _load_weights(model, weights_location, device_map, config, offload_folder)
    return dispatch_model(model, device_map=device_map, offload_dir=offload_folder)
