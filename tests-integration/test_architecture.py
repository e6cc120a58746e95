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
import re
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
    assert imported_accel_subpackages(COMPAT / "src", strings=False) == set(), (
        "the compat wheel imports by name"
    )


def subpackage_of(dist: Path) -> str:
    names = [
        p.name for p in (dist / "src" / "accel").iterdir() if p.is_dir() and p.name != "__pycache__"
    ]
    assert len(names) == 1, f"{dist.name} must ship exactly one accel/<name>/, found {names}"
    return names[0]


# A string naming a module: ``accel.x.y`` or ``accel.x.y:attr`` (entry-point style), or a
# relative one (``..x``) as lazy export tables use.
MODULE_STRING = re.compile(r"^(\.+|accel\.)[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[\w.]+)?$")

# Strings naming a module of a wheel the owner may not import, each with why it is not an
# import in the owner's process. Anything else that names such a module fails the rules.
KNOWN_STRING_REFERENCES = {
    ("accel-launch", "accel-xla"): (
        "`accel launch --tpu` probes find_spec('accel.xla') and runs `python -m "
        "accel.xla.launch` in a child process; it never imports accel.xla itself"
    ),
}


SHIPPED_SUBPACKAGES = {
    p.name for p in PACKAGES.glob("*/src/accel/*") if p.is_dir() and p.name != "__pycache__"
}


def _package_of(file: Path, source: Path) -> list[str]:
    """The dotted package ``file`` belongs to (``accel/core/x.py`` -> ``accel.core``)."""
    parts = list(file.relative_to(source).with_suffix("").parts)
    if parts[-1] == "__init__":
        return parts[:-1]
    return parts[:-1]


def _resolve_relative(name: str, level: int, package: list[str]) -> str | None:
    """Absolute name of a relative import; None when it climbs above the top package."""
    if level - 1 >= len(package):
        return None
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imported_names(file: Path, source: Path, strings: bool) -> set[str]:
    """Every module ``file`` imports: absolute, relative and from-imports, and (``strings``)
    module names in strings. An absolute string counts only when it names a package some
    wheel ships (``accel.strategies`` is an entry-point group, not a module)."""
    tree = ast.parse(file.read_text(), filename=str(file))
    package = _package_of(file, source)
    in_fstring = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                node.module
                if node.level == 0
                else _resolve_relative(node.module or "", node.level, package)
            )
            if base is None:
                continue
            found.add(base)
            # `from accel import core` imports the module accel.core
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and strings
            and id(node) not in in_fstring
            and MODULE_STRING.match(node.value)
        ):
            name = node.value.split(":")[0]
            if name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                resolved = _resolve_relative(name.lstrip("."), level, package)
                if resolved is not None:
                    found.add(resolved)
            elif name.split(".")[1] in SHIPPED_SUBPACKAGES:
                found.add(name)
    return found


def imported_accel_subpackages(source: Path, strings: bool = True) -> set[str]:
    """The ``accel.<name>`` packages that the code under ``source`` imports (or names in a
    string, unless ``strings`` is false)."""
    found: set[str] = set()
    for file in source.rglob("*.py"):
        for name in _imported_names(file, source, strings):
            parts = name.split(".")
            if parts[0] == "accel" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_scanner_sees_relative_from_and_string_imports(tmp_path: Path) -> None:
    """The rules below are only as good as this scanner: each import form is seen."""
    module = tmp_path / "accel" / "state" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from .. import ops\n"  # relative, above the own package
        "from ..launch import cli\n"
        "from accel import core\n"  # from-import of a sibling package
        "import importlib\n"
        "def later():\n"
        "    from accel.big_model import hooks\n"  # inside a function
        "    return importlib.import_module('accel.deepspeed')\n"  # a module string
        "TABLE = {'x': 'accel.xla.launch:main', 'y': '..nested'}\n"  # entry-point style
        "GROUP = 'accel.strategies'\n"  # an entry-point group, not a shipped package
        "MESSAGE = f'accel.ops.{TABLE}'\n"  # text in an f-string is not an import
    )
    assert imported_accel_subpackages(tmp_path) == {
        "ops",
        "launch",
        "core",
        "big_model",
        "deepspeed",
        "xla",
        "nested",
    }


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
    forbidden -= {target for (owner_, target) in KNOWN_STRING_REFERENCES if owner_ == dist.name}
    assert not forbidden, f"{dist.name} may not import {sorted(forbidden)} (see DESIGN.md)"


@pytest.mark.parametrize("known", sorted(KNOWN_STRING_REFERENCES), ids="->".join)
def test_known_string_references_are_only_strings(known: tuple[str, str]) -> None:
    """An allowed reference by name stays one: the owner never really imports the target."""
    owner_dist, target_dist = known
    target = subpackage_of(PACKAGES / target_dist)
    source = PACKAGES / owner_dist / "src"
    imported = set()
    for file in source.rglob("*.py"):
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert not any(name.startswith(f"accel.{target}") for name in imported)
    # and still named: when the reference goes, its entry in KNOWN_STRING_REFERENCES goes too
    assert target in imported_accel_subpackages(source)


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
    used -= {target for (owner_, target) in KNOWN_STRING_REFERENCES if owner_ == dist.name}
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
