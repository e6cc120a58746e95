"""Regenerate ``packages/accel-compat/src/accelerate/_mapping.py`` from the real Accelerate.

Reads the public names of the Accelerate modules that clients import (from the installed
``accelerate`` wheel's source, never by importing it) and looks each one up in the public
exports of the accel packages. A name accel exports maps to ``"accel.<pkg>:<name>"``; any
other lands in the ``MISSING`` table with the accel area that would own it.

Run it in the dev environment (which has the real ``accelerate``) after names were added to
accel packages:

    uv run python tools/compat/gen_mapping.py          # rewrite the table
    uv run python tools/compat/gen_mapping.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pprint
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "packages/accel-compat/src/accelerate/_mapping.py"

# The Accelerate modules the compat wheel provides (clients import from these).
MODULES = [
    "accelerate",
    "accelerate.accelerator",
    "accelerate.big_modeling",
    "accelerate.commands.config",
    "accelerate.commands.launch",
    "accelerate.data_loader",
    "accelerate.hooks",
    "accelerate.launchers",
    "accelerate.logging",
    "accelerate.optimizer",
    "accelerate.parallelism_config",
    "accelerate.scheduler",
    "accelerate.state",
    "accelerate.utils",
    "accelerate.utils.constants",
    "accelerate.utils.dataclasses",
    "accelerate.utils.deepspeed",
    "accelerate.utils.fsdp_utils",
    "accelerate.utils.imports",
    "accelerate.utils.memory",
    "accelerate.utils.modeling",
    "accelerate.utils.operations",
    "accelerate.utils.other",
    "accelerate.utils.random",
    "accelerate.utils.versions",
]

# Where accel looks for a name, owners first (accel.core re-exports lower packages' names).
ACCEL_PACKAGES = [
    "accel.state",
    "accel.ops",
    "accel.big_model",
    "accel.launch",
    "accel.core",
    "accel.deepspeed",
]

# Accelerate name -> accel location, where accel's own name or module differs.
OVERRIDES: dict[str, str] = {}

# Names accel defines in some module with a different meaning than Accelerate's.
NOT_THE_SAME = {"main", "launch_command", "run", "register"}

# Accelerate source module (relative to ``accelerate``) -> the accel area that would own it.
AREAS = {
    "utils.megatron_lm": "Megatron-LM (not planned in accel)",
    "utils.transformer_engine": "FP8 / Transformer Engine (accel-core, not implemented)",
    "utils.ao": "FP8 / torchao (accel-core, not implemented)",
    "utils.deepspeed": "DeepSpeed adapter (accel-deepspeed)",
    "utils.fsdp_utils": "FSDP (accel-core)",
    "utils.imports": "availability checks (accel-state)",
    "utils.environment": "process environment (accel-state)",
    "state": "process state (accel-state)",
    "utils.modeling": "big-model inference (accel-big-model)",
    "utils.offload": "big-model inference (accel-big-model)",
    "utils.bnb": "quantized loading (accel-big-model)",
    "big_modeling": "big-model inference (accel-big-model)",
    "hooks": "big-model hooks (accel-big-model)",
    "utils.operations": "collectives and structures (accel-ops)",
    "utils.random": "randomness (accel-ops)",
    "utils.other": "model helpers (accel-core)",
    "utils.memory": "memory helpers (accel-core)",
    "utils.constants": "checkpoint and FSDP constants (accel-core)",
    "parallelism_config": "parallelism config (accel-core)",
    "data_loader": "data loaders (accel-core)",
    "optimizer": "optimizer wrapper (accel-core)",
    "accelerator": "Accelerator (accel-core)",
    "utils.dataclasses": "kwargs and plugins (accel-core)",
    "utils.launch": "launcher (accel-launch)",
    "launchers": "launcher (accel-launch)",
    "commands": "command line (accel-launch)",
    "utils.torch_xla": "torch-xla adapter (accel-xla)",
    "tracking": "trackers (accel-core)",
    "logging": "logging (accel-core)",
    "inference": "pipeline inference (not planned in accel)",
    "local_sgd": "LocalSGD (accel-core, not implemented)",
}


def _source(module: str) -> tuple[Path, bool]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        sys.exit(f"gen_mapping: {module} not found; run in the dev environment")
    return Path(spec.origin), spec.submodule_search_locations is not None


def _resolve(module: str, level: int, target: str | None, package: bool) -> str:
    parts = module.split(".")
    base = parts if package else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def public_names(module: str) -> dict[str, str]:
    """Public names of ``module`` -> the Accelerate module that defines them.

    A package's relative imports are its public re-exports; a plain module's are its own
    dependencies, kept (with origin ``""``) only where accel happens to have the name.
    """
    path, package = _source(module)
    tree = ast.parse(path.read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        for stmt in _flatten(node):
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.setdefault(stmt.name, module)
            elif isinstance(stmt, ast.Assign):
                for tgt in stmt.targets:
                    if isinstance(tgt, ast.Name):
                        names.setdefault(tgt.id, module)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                names.setdefault(stmt.target.id, module)
            elif isinstance(stmt, ast.ImportFrom) and stmt.level > 0:
                origin = _resolve(module, stmt.level, stmt.module, package)
                for alias in stmt.names:
                    names.setdefault(alias.asname or alias.name, origin if package else "")
    return {n: o for n, o in names.items() if not n.startswith("_") and n != "logger"}


def _flatten(node: ast.stmt) -> list[ast.stmt]:
    if isinstance(node, ast.If):
        return [s for child in node.body + node.orelse for s in _flatten(child)]
    if isinstance(node, ast.Try):
        return [s for child in node.body for s in _flatten(child)]
    return [node]


def accel_index() -> dict[str, str]:
    """Accelerate-spelled name -> accel ``module:name``: package exports first, then public
    functions and classes defined in the packages' modules (printed, for review)."""
    index: dict[str, str] = {}
    for package in ACCEL_PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", []):
            index.setdefault(name, f"{package}:{name}")
    for package in ACCEL_PACKAGES:
        root = Path(importlib.import_module(package).__path__[0])
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if any(part.startswith("_") for part in rel.parts) or "tests" in rel.parts:
                continue
            dotted = ".".join((package, *rel.parts))
            for node in ast.parse(path.read_text()).body:
                is_def = isinstance(node, (ast.FunctionDef, ast.ClassDef))
                if is_def and node.name not in index and not node.name.startswith("_"):
                    if node.name in NOT_THE_SAME:
                        continue
                    index[node.name] = f"{dotted}:{node.name}"
                    UNEXPORTED.append(index[node.name])
    index.update(OVERRIDES)
    return index


UNEXPORTED: list[str] = []


def area(origin: str) -> str:
    rel = origin.removeprefix("accelerate").lstrip(".")
    for key in sorted(AREAS, key=len, reverse=True):
        if rel == key or rel.startswith(key + "."):
            return AREAS[key]
    return "accel compat names (issue #14)"


def render() -> tuple[str, int, int]:
    """The text of ``_mapping.py`` and the mapped / missing counts."""
    index = accel_index()
    names: dict[str, dict[str, str]] = {}
    missing: dict[str, dict[str, str]] = {}
    for module in MODULES:
        for name, origin in sorted(public_names(module).items()):
            if name in index:
                names.setdefault(module, {})[name] = index[name]
            elif not origin or _is_submodule(module, name):
                continue
            else:
                missing.setdefault(module, {})[name] = area(origin)
    body = (
        '"""Accelerate dotted name -> accel ``module:name`` (generated by tools/compat/gen_mapping.py).\n\n'
        "``NAMES[module][name]`` is where accel implements an Accelerate name; ``MISSING[module][name]``\n"
        "is the accel area that would own a name accel does not implement (importing it raises).\n"
        "Edit the generator, not this file.\n"
        '"""\n\n'
        f"NAMES: dict[str, dict[str, str]] = {pprint.pformat(names, width=100, sort_dicts=True)}\n\n"
        f"MISSING: dict[str, dict[str, str]] = {pprint.pformat(missing, width=100, sort_dicts=True)}\n"
    )
    used = {t for table in names.values() for t in table.values()}
    for target in UNEXPORTED:
        if target in used:
            print(f"gen_mapping: mapped to a module, not a package export: {target}")
    return body, sum(len(v) for v in names.values()), sum(len(v) for v in missing.values())


def main(argv: list[str]) -> int:
    body, found, lost = render()
    if "--check" in argv:
        if TARGET.read_text() != body:
            print(f"gen_mapping: {TARGET.relative_to(ROOT)} is out of date; rerun {__file__}")
            return 1
        print(f"gen_mapping: up to date ({found} names mapped, {lost} missing)")
        return 0
    TARGET.write_text(body)
    print(f"gen_mapping: {found} names mapped, {lost} missing -> {TARGET.relative_to(ROOT)}")
    return 0


def _is_submodule(module: str, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{module}.{name}") is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
