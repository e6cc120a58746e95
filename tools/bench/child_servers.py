"""Long-lived benchmark children for ``--smoke`` runs: one per library, one request per line.

A ``--smoke`` run takes one round of everything, so a fresh interpreter per measurement (what
``--quick`` and full runs use for cold-start numbers) would cost more than the measurement.
The parent keeps one child per library (the same script started with ``--serve``), sends it
one JSON request per line and reads one ``RESULT <json>`` line back.

    servers = ChildServers(__file__, env)      # parent
    result = servers.ask("accel", {"task": "load"})
    servers.close()

    serve(answer)                              # child, under --serve
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO, Any

RESULT = "RESULT "


def serve(answer: Callable[[Any], Any]) -> None:
    """Child side: answer each JSON request on stdin with one ``RESULT`` line on stdout.

    Example:
        >>> import io
        >>> sys.stdin, stdin = io.StringIO('[1, 2]\\n'), sys.stdin
        >>> try:
        ...     serve(sum)
        ... finally:
        ...     sys.stdin = stdin
        RESULT 3
    """
    for line in sys.stdin:
        print(RESULT + json.dumps(answer(json.loads(line))), flush=True)


class ChildServers:
    """Parent side: one ``script --serve`` child per key, started on first use, its stderr
    kept in a temporary file for the failure report.

    Example:
        >>> import os
        >>> child = "import json, sys\\nfor line in sys.stdin: print('RESULT', json.loads(line) * 2, flush=True)"
        >>> script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        >>> _ = script.write(child); script.close()
        >>> servers = ChildServers(script.name, dict(os.environ))
        >>> servers.ask("a", 21)
        42
        >>> servers.close(); os.unlink(script.name)
    """

    def __init__(self, script: str, env: dict[str, str] | None = None) -> None:
        self.script = script
        self.env = env
        self.children: dict[str, tuple[subprocess.Popen[str], IO[str]]] = {}

    def ask(self, key: str, request: Any) -> Any:
        """Send ``request`` to the child for ``key``; its answer (raises if the child died)."""
        if key not in self.children:
            errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in close())
            child = subprocess.Popen(
                [sys.executable, self.script, "--serve"],
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            self.children[key] = (child, errors)
        child, errors = self.children[key]
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        for line in child.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT) :])
        errors.seek(0)
        raise RuntimeError(
            f"{key} benchmark child failed ({child.wait()}) on {request}:\n{errors.read()[-4000:]}"
        )

    def close(self) -> None:
        """End every child (stdin closed); raise if one did not exit 0."""
        for key, (child, errors) in self.children.items():
            assert child.stdin is not None
            child.stdin.close()
            if child.wait(timeout=300) != 0:
                errors.seek(0)
                raise RuntimeError(f"{key} benchmark child failed:\n{errors.read()[-4000:]}")
            errors.close()
        self.children.clear()
