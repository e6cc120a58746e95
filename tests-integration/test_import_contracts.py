"""The import-linter contracts of the root ``pyproject.toml`` hold, and can fail.

The contracts (DESIGN.md's arrows between wheels as layers, adapters independent of each
other, no import cycle between sibling modules) run on the source tree. A copy of the tree
with one violation planted per contract proves each contract notices its kind of breakage,
including a relative import and an import inside a function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# (module file under accel/, appended code, the import line the report must name, contract)
PLANTED = [
    # a lower wheel imports a higher one, at module level
    ("state/env.py", "import accel.ops\n", "accel.state.env -> accel.ops", "training-stack"),
    # core reaches an adapter through a relative import
    (
        "core/memory.py",
        "from ..deepspeed import availability\n",
        "accel.core.memory -> accel.deepspeed.availability",
        "training-stack",
    ),
    # the launcher imports core, inside a function
    (
        "launch/gpu_probe.py",
        "def _planted():\n    import accel.core\n",
        "accel.launch.gpu_probe -> accel.core",
        "launcher-stack",
    ),
    (
        "launch/slurm.py",
        "import accel.ops\n",
        "accel.launch.slurm -> accel.ops",
        "launcher-imports-only-state",
    ),
    (
        "big_model/init.py",
        "import accel.launch\n",
        "accel.big_model.init -> accel.launch",
        "below-launcher",
    ),
    (
        "xla/loader.py",
        "import accel.deepspeed\n",
        "accel.xla.loader -> accel.deepspeed",
        "adapters-independent",
    ),
    # a cycle inside accel.ops hidden in a function: exceptions <-> randomness
    (
        "ops/exceptions.py",
        "def _planted():\n    from accel.ops import randomness\n",
        "No cycles are allowed in accel.ops.",
        "no-cycles",
    ),
]

CONTRACT_NAMES = {
    "training-stack": "adapters > core > big_model > ops > state",
    "launcher-stack": "core > launch > state",
    "launcher-imports-only-state": "accel.launch imports only accel.state",
    "below-launcher": "accel.ops and accel.big_model never import the launcher",
    "adapters-independent": "the adapters never import each other",
    "no-cycles": "no import cycle between sibling modules",
}


def lint_imports(source: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the root config on ``source`` (default: the real tree)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(source)] if source else [str(ROOT / "packages" / "accel-xla" / "src")]
    )
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(CONFIG), "--no-cache"],
        cwd=source or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def contract_lines(report: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN, from the report's summary section."""
    flat = " ".join(report.split())
    return {
        key: ("BROKEN" if f"{name}" in flat and _status(flat, name) == "BROKEN" else "KEPT")
        for key, name in CONTRACT_NAMES.items()
    }


def _status(flat: str, name: str) -> str:
    after = flat[flat.index(name) :]
    kept, broken = after.find(" KEPT"), after.find(" BROKEN")
    if broken != -1 and (kept == -1 or broken < kept):
        return "BROKEN"
    return "KEPT"


def test_contracts_hold_on_the_source_tree() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(contract_lines(result.stdout).values()) == {"KEPT"}
    assert "Contracts: 6 kept, 0 broken." in result.stdout


def test_every_contract_fails_on_a_planted_violation(tmp_path: Path) -> None:
    """One copy of the tree carries one violation per contract; each contract reports its own."""
    tree = tmp_path / "src"
    for package in sorted((ROOT / "packages").glob("*/src/accel")):
        shutil.copytree(package, tree / "accel", dirs_exist_ok=True, ignore=_no_bytecode)
    # the cycle needs its other half: randomness imports exceptions at module level
    randomness = tree / "accel" / "ops" / "randomness.py"
    randomness.write_text(randomness.read_text() + "\nfrom accel.ops import exceptions\n")
    for module, code, _, _ in PLANTED:
        path = tree / "accel" / module
        path.write_text(path.read_text() + "\n" + code)

    result = lint_imports(tree)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert contract_lines(result.stdout) == dict.fromkeys(CONTRACT_NAMES, "BROKEN"), report
    for _, _, line, _ in PLANTED:
        assert line in report, f"the report does not name {line!r}:\n{report}"


def _no_bytecode(_directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name == "__pycache__"]
