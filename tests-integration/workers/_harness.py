"""Run named checks inside one worker process and write this rank's report as JSON.

Each check is a function; an exception (or failed ``assert``) becomes that check's error text
and the next check runs. The report is rewritten after every check, so a job killed by the
launcher's timeout still shows how far each rank got.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def refused(call: Callable[[], object], *fragments: str, accepted: str) -> str:
    """Run ``call``, which must raise ``ValueError`` with every one of ``fragments`` in its
    message; returns the message. ``accepted`` is the failure when it returns instead.

    Example:
        >>> refused(lambda: int("x"), "invalid literal", accepted="int('x') worked")
        "invalid literal for int() with base 10: 'x'"
    """
    try:
        call()
    except ValueError as error:
        message = str(error)
        assert all(fragment in message for fragment in fragments), message
        return message
    raise AssertionError(accepted)


class Checks:
    """An ordered list of named checks and the report of running them on this rank.

    Example:
        >>> checks = Checks()
        >>> @checks.add
        ... def arithmetic():
        ...     assert 1 + 1 == 2
        >>> checks.run(rank=0)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._checks: list[tuple[str, Callable[[], Any]]] = []
        self.report: dict[str, dict[str, Any]] = {"checks": {}, "seconds": {}, "values": {}}
        self.rank: int | None = None

    def add(self, function: Callable[[], Any]) -> Callable[[], Any]:
        """Register ``function`` as a check named after it (decorator).

        Example:
            >>> Checks().add(lambda: None).__name__
            '<lambda>'
        """
        self._checks.append((function.__name__, function))
        return function

    def include(self, other: Checks) -> None:
        """Run ``other``'s checks after these, in this report (another worker's checks in the
        same launch); ``other``'s recorded values land in this report too.

        Example:
            >>> first, second = Checks(), Checks()
            >>> _ = second.add(lambda: None)
            >>> first.include(second); len(first._checks)
            1
        """
        self._checks.extend(other._checks)
        other.report = self.report

    def record(self, name: str, value: Any) -> None:
        """Keep a JSON-able ``value`` in the report for pytest to compare across ranks or runs.

        Example:
            >>> Checks().record("answer", 42)
        """
        self.report["values"][name] = value

    def _write(self) -> None:
        out_dir = Path(os.environ["ACCEL_IT_OUT"])
        target = out_dir / f"rank{self.rank}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.report, indent=1, sort_keys=False))
        temporary.replace(target)

    def run(self, rank: int) -> None:
        """Run every check in order as process ``rank``, writing the report after each.

        Example:
            >>> Checks().run(rank=0)  # doctest: +SKIP
        """
        self.rank = rank
        for name, function in self._checks:
            started = time.monotonic()
            try:
                function()
                outcome = "ok"
            except BaseException as error:  # a check's failure must not stop the others
                outcome = "".join(traceback.format_exception(error))[-4000:]
            self.report["checks"][name] = outcome
            self.report["seconds"][name] = round(time.monotonic() - started, 3)
            self._write()
