"""What accel sets up for a model's offload and releases with it: temporary offload folders
and the prefetch thread.

Temporary offload folders (made only when weights must be copied and no folder was given)
belong to the model: they are deleted when the model is garbage-collected, at interpreter
exit, or by :func:`cleanup_offload`.

Example:
    >>> cleanup_offload(nn.Linear(1, 1))
    []
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable
from typing import Any

from torch import nn

from accel.big_model.align_hook import align_device_hooks, align_device_hooks_of
from accel.big_model.hooks import hook_of
from accel.big_model.prefetch import OffloadPrefetcher, prefetch_enabled


def on_release(model: nn.Module, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` when ``model`` is freed, at exit, or on :func:`cleanup_offload`.

    Example:
        >>> model = nn.Linear(1, 1)
        >>> on_release(model, print, "released")
        >>> _ = cleanup_offload(model)
        released
    """
    finalizers = model.__dict__.setdefault("_accel_finalizers", [])
    finalizers.append(weakref.finalize(model, fn, *args))


def temporary_offload_folder(model: nn.Module) -> str:
    """A new temporary folder owned by ``model``: deleted with it, at exit, or by
    :func:`cleanup_offload`.

    Example:
        >>> import os
        >>> model = nn.Linear(1, 1)
        >>> folder = temporary_offload_folder(model)
        >>> cleanup_offload(model) == [folder], os.path.exists(folder)
        (True, False)
    """
    folder = tempfile.mkdtemp(prefix="accel-offload-")
    on_release(model, shutil.rmtree, folder, True)
    model.__dict__.setdefault("_accel_temporary_offload_folders", []).append(folder)
    return folder


def cleanup_offload(model: nn.Module) -> list[str]:
    """Release what accel set up for ``model``'s offload: delete the temporary offload folders
    it created (never a folder you passed), stop the prefetch thread. Returns the deleted
    folders. Runs by itself when the model is garbage-collected or at exit; call it to free
    the disk space earlier. The model's offloaded weights are unusable afterwards.

    Example:
        >>> cleanup_offload(nn.Linear(1, 1))
        []
    """
    folders = list(model.__dict__.pop("_accel_temporary_offload_folders", []))
    for finalizer in model.__dict__.pop("_accel_finalizers", []):
        finalizer()
    return folders


def setup_prefetch(model: nn.Module, prefetcher: OffloadPrefetcher | None) -> None:
    """Seed ``prefetcher`` with the order of ``model``'s offloading hooks and make the root hook
    mark forward passes; without offloading hooks it is closed and detached. The prefetch
    thread stops when the model is released.

    Example:
        >>> setup_prefetch(nn.Linear(1, 1), None)
    """
    if prefetcher is None:
        return
    hooks = align_device_hooks(model)
    offloaded = [h for h in hooks if h.offload and h.prefetcher is prefetcher]
    root = next(iter(align_device_hooks_of(hook_of(model))), None)
    if not offloaded:
        for hook in hooks:
            if hook.prefetcher is prefetcher:
                hook.prefetcher = None
        prefetcher.close()
        return
    if root is not None:
        root.prefetcher = prefetcher
        prefetcher.root = root
    prefetcher.seed(offloaded)
    on_release(model, prefetcher.close)


def new_prefetcher(prefetch: bool | None) -> OffloadPrefetcher | None:
    """An :class:`OffloadPrefetcher` if prefetching is on (``prefetch``, else
    ``ACCEL_OFFLOAD_PREFETCH``), else ``None``.

    Example:
        >>> new_prefetcher(False) is None
        True
    """
    return OffloadPrefetcher() if prefetch_enabled(prefetch) else None
