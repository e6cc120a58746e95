"""``torch.compile`` as a ``TorchDynamoPlugin`` asks: the whole model, or its repeated blocks.

Regional compilation (``use_regional_compilation=True``) compiles each block of the model's
``ModuleList`` containers of same-class blocks (a transformer's layers) in place, instead of
the whole model: the first block compiles, the others reuse its code, so start-up is much
shorter and the model keeps its own class.

Example:
    >>> blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])
    >>> [type(b).__name__ for b in repeated_blocks(torch.nn.Sequential(blocks))]
    ['Linear', 'Linear', 'Linear']
"""

from __future__ import annotations

from typing import Any

import torch


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Blocks of every ``ModuleList`` in ``model`` whose items (at least 2) share one class.

    Example:
        >>> repeated_blocks(torch.nn.Linear(2, 2))
        []
    """
    blocks: list[torch.nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside or not isinstance(module, torch.nn.ModuleList):
            continue
        items = list(module)
        if len(items) >= 2 and len({type(item) for item in items}) == 1:
            blocks.extend(items)
            inside.update(id(sub) for item in items for sub in item.modules())
    return blocks


def compile_model(model: torch.nn.Module, plugin: Any) -> torch.nn.Module:
    """Compile ``model`` with the options of ``plugin`` (a ``TorchDynamoPlugin``).

    With ``use_regional_compilation`` the repeated blocks are compiled in place and ``model``
    itself is returned; a model without repeated blocks is compiled whole.

    Example:
        >>> compiled = compile_model(model, TorchDynamoPlugin(backend="inductor"))  # doctest: +SKIP
    """
    options = plugin.to_kwargs()
    blocks = repeated_blocks(model) if plugin.use_regional_compilation else []
    if not blocks:
        # torch.compile of a Module returns an OptimizedModule; its stub says a bare Callable
        return torch.compile(model, **options)  # pyright: ignore[reportReturnType]
    for block in blocks:
        block.compile(**options)
    return model
