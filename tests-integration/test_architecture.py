"""The package rules of DESIGN.md, checked on the source tree.

- ``accel`` stays a namespace package: no wheel ships ``accel/__init__.py``.
- Each wheel ships exactly its own ``accel/<name>/``.
- Packages import each other only along the declared dependency arrows, and the arrows match
  each wheel's ``pyproject.toml`` dependencies.
- The launcher-facing modules of accel-state import without torch.
- accel-compat ships only ``accelerate/`` and maps names onto the packages below it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"

# What each distribution may import, per DESIGN.md (besides itself).
ALLOWED = {
    "accel-state": set(),
    "accel-ops": {"accel-state"},
    "accel-big-model": {"accel-state", "accel-ops"},
    "accel-launch": {"accel-state"},
    "accel-core": {"accel-state", "accel-ops", "accel-big-model", "accel-launch"},
    "accel-xla": {"accel-state", "accel-ops", "accel-big-model", "accel-launch", "accel-core"},
    "accel-deepspeed": {
        "accel-state",
        "accel-ops",
        "accel-big-model",
        "accel-launch",
        "accel-core",
    },
}

TORCH_FREE_MODULES = [
    "accel.state.env",
    "accel.state.enums",
    "accel.state.environment",
    "accel.state.backends",
    "accel.state.world",
    "accel.state.kwargs",
]


COMPAT = PACKAGES / "accel-compat"
# accel-compat (the `accelerate` import name) may map names onto these (DESIGN.md).
COMPAT_ALLOWED = {
    "accel-state",
    "accel-ops",
    "accel-big-model",
    "accel-launch",
    "accel-core",
    "accel-deepspeed",
}


def distributions() -> list[Path]:
    """The wheels shipping ``accel/<name>/`` (accel-compat ships ``accelerate/`` instead)."""
    return sorted(p for p in PACKAGES.iterdir() if (p / "pyproject.toml").is_file() and p != COMPAT)


def test_compat_wheel_ships_only_accelerate_and_maps_onto_allowed_packages() -> None:
    assert not (COMPAT / "src" / "accel").exists()
    assert [p.name for p in (COMPAT / "src").iterdir()] == ["accelerate"]
    pyproject = tomllib.loads((COMPAT / "pyproject.toml").read_text())
    hook = pyproject["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    assert pyproject["project"]["name"] == "accelerate"
    # version and pins come from the workspace VERSION (tools/release/check.py checks the wheel)
    assert {"version", "dependencies"} <= set(pyproject["project"]["dynamic"])
    assert hook["version"] == "1.15.0+accel{version}"
    assert hook["dependencies"] == ["accel-core"]
    assert set(hook["siblings"]) >= {"accel-core"}
    owner = {subpackage_of(d): d.name for d in distributions()}
    namespace: dict = {}
    exec((COMPAT / "src/accelerate/_mapping.py").read_text(), namespace)
    targets = {t.split(":")[0] for table in namespace["NAMES"].values() for t in table.values()}
    used = {owner[t.split(".")[1]] for t in targets}
    assert used <= COMPAT_ALLOWED, sorted(used - COMPAT_ALLOWED)
    assert imported_accel_subpackages(COMPAT / "src") == set(), "the compat wheel imports by name"


def subpackage_of(dist: Path) -> str:
    names = [
        p.name for p in (dist / "src" / "accel").iterdir() if p.is_dir() and p.name != "__pycache__"
    ]
    assert len(names) == 1, f"{dist.name} must ship exactly one accel/<name>/, found {names}"
    return names[0]


def imported_accel_subpackages(source: Path) -> set[str]:
    found: set[str] = set()
    for file in source.rglob("*.py"):
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "accel" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_distribution_is_known_to_the_rules() -> None:
    assert {d.name for d in distributions()} <= set(ALLOWED)


@pytest.mark.parametrize("dist", distributions(), ids=lambda d: d.name)
def test_accel_is_a_namespace_package(dist: Path) -> None:
    assert not (dist / "src" / "accel" / "__init__.py").exists()
    subpackage_of(dist)


@pytest.mark.parametrize("dist", distributions(), ids=lambda d: d.name)
def test_imports_follow_the_dependency_arrows(dist: Path) -> None:
    owner = {subpackage_of(d): d.name for d in distributions()}
    own = subpackage_of(dist)
    used = imported_accel_subpackages(dist / "src") - {own}
    unknown = used - set(owner)
    assert not unknown, f"{dist.name} imports accel.{sorted(unknown)}, which no wheel provides"
    forbidden = {owner[name] for name in used} - ALLOWED[dist.name]
    assert not forbidden, f"{dist.name} may not import {sorted(forbidden)} (see DESIGN.md)"


@pytest.mark.parametrize("dist", distributions(), ids=lambda d: d.name)
def test_pyproject_pins_siblings_it_imports_in_lockstep(dist: Path) -> None:
    """Siblings are declared by name; the metadata hook pins them to the one VERSION."""
    pyproject = tomllib.loads((dist / "pyproject.toml").read_text())
    meta = pyproject["project"]
    hook = pyproject["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    assert {"version", "dependencies"} <= set(meta.get("dynamic", [])), (
        f"{dist.name}: version and dependencies come from VERSION via tools/release"
    )
    owner = {subpackage_of(d): d.name for d in distributions()}
    used = {owner[n] for n in imported_accel_subpackages(dist / "src") if n in owner}
    used.discard(dist.name)
    declared = {dep.split("[")[0].strip(): dep for dep in hook.get("dependencies", [])}
    for sibling in used:
        assert sibling in declared, f"{dist.name} imports {sibling} but does not depend on it"
    try:  # the built (editable) metadata of this environment carries the pins
        requires = importlib.metadata.requires(dist.name) or []
    except importlib.metadata.PackageNotFoundError:
        return  # accel-xla lives in its own environment; tools/release/check.py checks it
    version = (ROOT / "VERSION").read_text().strip()
    assert importlib.metadata.version(dist.name) == version
    for sibling in used:
        assert f"{sibling}=={version}" in requires, (dist.name, sibling, requires)


def test_launcher_facing_modules_import_without_torch() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in TORCH_FREE_MODULES)
        + "from accel.state.backends import get_backend\n"
        + "get_backend('gloo')\n"
        + "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        + "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
