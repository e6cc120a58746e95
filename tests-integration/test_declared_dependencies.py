"""Every third-party package a wheel's ``src/`` imports is declared in that wheel's metadata.

An unconditional module-level import must be a required dependency (else a plain
``pip install`` of the wheel breaks at import). An import inside a function, a ``try`` or
``if TYPE_CHECKING`` may instead be an extra, or one of the few optional integrations below
that accel uses only when the user already has them.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())

# import name -> distribution name, where they differ.
DISTRIBUTION_OF = {
    "yaml": "pyyaml",
    "pynvml": "nvidia-ml-py",
    "torch_xla": "torch-xla",
    "mlflow": "mlflow-skinny",
}
# Imported only when present, to serve objects or environments the user brings along.
OPTIONAL_INTEGRATIONS = {
    "accel-state": {
        "torch_npu": "Ascend NPUs: vendor-installed torch plugin",
        "habana_frameworks": "Gaudi HPUs: vendor-installed torch plugin",
        "bitsandbytes": "is_bitsandbytes_multi_backend_available asks an installed bitsandbytes",
        "transformer_engine": "is_transformer_engine_mxfp8_available asks an installed TE",
    },
    "accel-ops": {"torch_xla": "RNG state on XLA devices; accel-xla brings torch-xla"},
    "accel-launch": {"IPython": "notebook_launcher detects a running notebook"},
    "accel-big-model": {
        "transformers": "estimate-memory for a transformers model the user names",
        "timm": "estimate-memory for a timm model the user names",
        "psutil": "more accurate free RAM when present",
    },
    "accel-core": {
        "datasets": "recognises a datasets.IterableDataset the user passes",
        "torchao": "fp8 training (mixed_precision='fp8') with the torchao the user installs",
        "peft": "recognises a PEFT model the user passes (is_peft_model, adapter_only)",
    },
    "accel-deepspeed": {
        "transformers": "Ulysses (sp_size > 1) swaps the attention of the transformers model "
        "the user passes",
    },
}


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return match.group(1).lower().replace("_", "-")


def _declared(package: Path) -> tuple[set[str], set[str]]:
    """(required, from extras) distribution names, read from the metadata hook's config (or
    from ``[project]`` for the compat wheel, whose metadata is static)."""
    data = _toml(package / "pyproject.toml")
    hook = data.get("tool", {}).get("hatch", {}).get("metadata", {}).get("hooks", {}).get("custom")
    if hook is None:
        hook = data["project"]
    required = {_name(r) for r in hook.get("dependencies", [])}
    extras = {_name(r) for reqs in hook.get("optional-dependencies", {}).values() for r in reqs}
    return required, extras


def _imports(tree: ast.Module) -> list[tuple[str, bool, int]]:
    """(top-level module, unconditional at module level, line) for every absolute import."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name.split(".")[0], not guarded, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], not guarded, child.lineno))
            elif isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Try | ast.If | ast.Lambda
            ):
                visit(child, True)
            else:
                visit(child, guarded)

    visit(tree, False)
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_every_third_party_import_is_declared(package: Path) -> None:
    required, extras = _declared(package)
    optional = OPTIONAL_INTEGRATIONS.get(package.name, {})
    problems = []
    own = {p.name for p in (package / "src").iterdir() if p.is_dir()}  # accel; accelerate
    for source in sorted((package / "src").rglob("*.py")):
        for module, unconditional, line in _imports(ast.parse(source.read_text(), str(source))):
            if module in sys.stdlib_module_names or module in own | {"accel", "__future__"}:
                continue
            dist = DISTRIBUTION_OF.get(module, module).lower().replace("_", "-")
            where = f"{source.relative_to(ROOT)}:{line} imports {module}"
            if unconditional and dist not in required:
                problems.append(f"{where} at module level; {dist} is not a dependency")
            elif dist not in required | extras and module not in optional:
                problems.append(f"{where}; {dist} is neither a dependency nor an extra")
    assert not problems, "\n".join(problems)
