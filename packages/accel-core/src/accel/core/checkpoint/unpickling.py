"""``torch.load(weights_only=True)`` for checkpoint files: plain data only, never code.

Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "state.pt")
    >>> torch.save({"step": 3}, path)
    >>> safe_load(path)
    {'step': 3}
"""

from __future__ import annotations

import codecs
import os
from typing import Any

import numpy as np
import torch

from accel.core.checkpoint.errors import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    describe_damage,
    unsafe_globals,
)
from accel.core.checkpoint.layout import PathLike

__all__ = ["safe_load"]


def numpy_safe_globals() -> list[Any]:
    """The numpy globals an RNG state needs, allowed on top of ``weights_only``'s rules.

    Example:
        >>> np.ndarray in numpy_safe_globals()
        True
    """
    core: Any = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    allowed: list[Any] = [core.multiarray._reconstruct, np.ndarray, np.dtype, codecs.encode]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "UInt32DType"):
        allowed.append(dtypes.UInt32DType)
    return allowed


def safe_load(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` that also accepts numpy arrays; never runs code.

    Raises :class:`UnsafeCheckpointError` (naming the file and what it asked for) when the
    file needs anything beyond tensors, containers, numbers, strings and numpy arrays (types
    you trust can be allowed with ``torch.serialization.add_safe_globals``), and
    :class:`CorruptCheckpointError` (naming the file and what is wrong with it) when it is
    empty, truncated or not a ``torch.save`` file.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "state.pt")
        >>> torch.save({"step": 3}, path)
        >>> safe_load(path)
        {'step': 3}
    """
    path = os.fspath(path)
    allowed = numpy_safe_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as error:
        wanted = unsafe_globals(path, allowed)
        if not wanted:
            raise CorruptCheckpointError(
                f"cannot read {path!r}: {describe_damage(path, error)}. Nothing was loaded from "
                "this checkpoint; load an earlier one, or save again."
            ) from error
        raise UnsafeCheckpointError(
            f"refusing to load {path!r}: it is not plain data (tensors, containers, numbers, "
            f"numpy arrays) and unpickling it could run code. It asks for {', '.join(wanted)}. "
            "If you wrote this file and trust it, allow its types with "
            "torch.serialization.add_safe_globals([...])."
        ) from error
