"""Keyword-argument holders that configure torch calls, and the one the state itself honours."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from typing import Any, ClassVar


class KwargsHandler:
    """Mixin for dataclasses whose non-default fields become keyword arguments of a torch call.

    Example:
        >>> InitProcessGroupKwargs(timeout=timedelta(seconds=60)).to_kwargs()
        {'timeout': datetime.timedelta(seconds=60)}
    """

    # set by @dataclass on every subclass; declared so that dataclasses.fields(self) type-checks
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """All fields, deep-copied.

        Example:
            >>> sorted(InitProcessGroupKwargs().to_dict())
            ['backend', 'init_method', 'timeout']
        """
        return copy.deepcopy({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def to_kwargs(self) -> dict[str, Any]:
        """Only the fields whose value differs from the class default.

        Example:
            >>> InitProcessGroupKwargs(backend="gloo").to_kwargs()
            {'backend': 'gloo'}
        """
        defaults = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if defaults[k] != v}


@dataclasses.dataclass
class InitProcessGroupKwargs(KwargsHandler):
    """Options for ``torch.distributed.init_process_group``.

    ``backend=None`` picks the backend that suits the device (gloo on CPU, nccl on CUDA, ...);
    ``timeout=None`` leaves torch's default for that backend.

    Example:
        >>> from accel.state import PartialState
        >>> kwargs = InitProcessGroupKwargs(timeout=timedelta(minutes=5)).to_kwargs()
        >>> state = PartialState(**kwargs)  # doctest: +SKIP
    """

    backend: str | None = None
    init_method: str | None = None
    timeout: timedelta | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and not isinstance(self.timeout, timedelta):
            raise TypeError(
                f"InitProcessGroupKwargs.timeout={self.timeout!r} must be a datetime.timedelta"
            )
        if self.timeout is not None and self.timeout.total_seconds() <= 0:
            raise ValueError(f"InitProcessGroupKwargs.timeout={self.timeout!r} must be positive")
