"""Run pyright (basic mode, ``[tool.pyright]`` in pyproject.toml): zero errors, every file read.

Fails on any error, listing each as ``path:line: rule: message``. It also fails when pyright
analysed fewer files than the shipped source holds (a broken environment or include list
would otherwise pass with "0 errors").

Example:
    uv run python tools/checks/pyright_clean.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pyright() -> dict:
    """Pyright's JSON report for the configured source tree."""
    done = subprocess.run(
        ["pyright", "--outputjson"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.exit(f"pyright produced no report (exit {done.returncode}):\n{done.stderr}")


def source_files() -> list[Path]:
    """The ``.py`` files under pyproject's ``[tool.pyright] include`` folders."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[tool.pyright]", 1)[1]
    include = re.search(r"^include = \[(.*?)\]", section, re.MULTILINE | re.DOTALL)
    if include is None:
        sys.exit("pyproject.toml's [tool.pyright] has no include list")
    folders = re.findall(r'"([^"]+)"', include.group(1))
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


def main() -> int:
    report = run_pyright()
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    analysed = report["summary"]["filesAnalyzed"]
    expected = len(source_files())
    print(f"pyright: {len(errors)} errors in {analysed} files ({expected} source files)")
    for d in errors:
        where = Path(d["file"]).relative_to(ROOT)
        line = d["range"]["start"]["line"] + 1
        print(f"{where}:{line}: {d.get('rule', '')}: {d['message'].splitlines()[0]}")
    if analysed < expected * 0.95:
        print(f"pyright read {analysed} of {expected} source files: check the environment")
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
