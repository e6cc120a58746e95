"""Why a ``torch.save`` file cannot be read: corrupt, or asking to run code.

``torch.load(weights_only=True)`` reports a damaged file in many ways (``EOFError``,
``IndexError: pop from empty list``, "failed finding central directory", and an
``UnpicklingError`` that suggests the file is unsafe when it is only garbage). This module
tells the two cases apart by looking at what the pickle really asks for: a file is *unsafe*
only when it names a global that the ``weights_only`` rules do not allow; anything else that
fails to load is *corrupt*, and the message says what is wrong with it (empty, not a
``torch.save`` file, an incomplete archive, ...).

Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "optimizer.bin")
    >>> open(path, "wb").close()
    >>> describe_damage(path, EOFError())
    'it is empty (0 bytes)'
"""

from __future__ import annotations

import os
import pickle
import pickletools
import zipfile
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "CorruptCheckpointError",
    "UnsafeCheckpointError",
    "asked_globals",
    "describe_damage",
    "unsafe_globals",
]


class CorruptCheckpointError(ValueError):
    """A checkpoint file whose layout does not hold together (truncated, or offsets and sizes
    that disagree); nothing was loaded from it into the model.

    Example:
        >>> str(CorruptCheckpointError("model.safetensors is truncated"))
        'model.safetensors is truncated'
    """


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file that ``torch.load(weights_only=True)`` refuses: it would run code.

    Example:
        >>> str(UnsafeCheckpointError("refusing random_states_0.pkl"))
        'refusing random_states_0.pkl'
    """


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"}
_STRING_OPS |= {"BINSTRING", "SHORT_BINSTRING"}
_GLOBAL_OPS = {"GLOBAL", "INST"}


def asked_globals(path: str) -> list[str]:
    """The globals (``module.name``) that the pickle in ``path`` would import.

    For a ``torch.save`` zip archive this is the pickle inside it; for anything else, the
    file read as a pickle, up to the first byte that is not one (garbage asks for nothing).

    Example:
        >>> import pickle, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.pkl")
        >>> with open(path, "wb") as f:
        ...     pickle.dump(os.getcwd, f)
        >>> asked_globals(path)
        ['posix.getcwd']
    """
    data: bytes
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
                data = archive.read(name) if name else b""
        except (zipfile.BadZipFile, OSError, EOFError):
            return []
    else:
        with open(path, "rb") as handle:
            data = handle.read(64 << 20)
    found: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _STRING_OPS:
                strings.append(arg.decode() if isinstance(arg, bytes) else str(arg))
            elif opcode.name in _GLOBAL_OPS:
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # garbage after (or instead of) a pickle: keep what was found
        pass
    return list(dict.fromkeys(found))


def _allowed(extra: Iterable[Any]) -> set[str]:
    from torch import _weights_only_unpickler as rules

    names = set(rules._get_allowed_globals())
    for obj in [*torch.serialization.get_safe_globals(), *extra]:
        if isinstance(obj, tuple):
            obj = obj[0]
        module = getattr(obj, "__module__", None)
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if module and name:
            names.add(f"{module}.{name}")
    return names


def unsafe_globals(path: str, allowed: Iterable[Any] = ()) -> list[str]:
    """The globals that ``path`` asks for and ``torch.load(weights_only=True)`` would refuse
    (``allowed``: objects allowed on top of torch's rules, as in ``safe_globals``).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "ok.pt")
        >>> torch.save({"w": torch.ones(1)}, path)
        >>> unsafe_globals(path)
        []
    """
    ok = _allowed(allowed)
    return [name for name in asked_globals(path) if name not in ok]


def describe_damage(path: str, error: BaseException) -> str:
    """What is wrong with ``path``, a file that failed to load with ``error`` and asks for no
    unsafe global: a short phrase for a message.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "scheduler.bin")
        >>> with open(path, "wb") as f:
        ...     _ = f.write(b"PK\\x03\\x04 cut here")
        >>> describe_damage(path, RuntimeError("failed finding central directory"))
        'it is an incomplete zip archive (13 bytes; truncated while being written or copied?)'
    """
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        return (
            f"it is an incomplete zip archive ({size} bytes; truncated while being written or "
            "copied?)"
        )
    if zipfile.is_zipfile(path):
        return f"it is a damaged torch.save archive ({size} bytes): {_first_line(error)}"
    if head[:1] == b"\x80":
        return f"its pickle data is cut short or damaged ({size} bytes): {_first_line(error)}"
    return f"it is not a torch.save file ({size} bytes, starting with {head!r})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    if not text:
        return "the data ends too early" if isinstance(error, EOFError) else type(error).__name__
    return f"{type(error).__name__}: {text[0].rstrip('.')}"
