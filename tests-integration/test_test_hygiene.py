"""Checks on the test suite itself: tests that cannot fail, or vanish, are caught here.

- every test function checks something: an ``assert``, ``pytest.raises``/``warns``, a
  subprocess run with ``check=True``, or a call to a helper of the same file that asserts;
- no conftest drops test files silently (``collect_ignore``): a test that cannot run here is
  collected and reported as skipped, with its reason;
- the reference libraries (accelerate, transformers) are never skipped for a whole module of
  a package's tests: only the comparisons that need them may skip, accel's own tests still
  run. (tests-integration's comparison modules, where every test compares, may.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = sorted(
    [*ROOT.glob("packages/*/tests/**/test_*.py"), *ROOT.glob("tests-integration/test_*.py")]
)
CONFTESTS = sorted(
    [
        ROOT / "conftest.py",
        *ROOT.glob("packages/*/tests/**/conftest.py"),
        *ROOT.glob("tests-*/**/conftest.py"),
    ]
)
CHECKING_ATTRIBUTES = {"raises", "warns", "deprecated_call", "fail", "skip", "xfail"}
REFERENCE_LIBRARIES = ("accelerate", "transformers")


def _checks_directly(function: ast.AST) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Attribute) and (
            node.attr in CHECKING_ATTRIBUTES or node.attr.startswith("assert")
        ):
            return True
        if isinstance(node, ast.Call) and any(
            k.arg == "check" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        ):
            return True
    return False


def _called_names(function: ast.AST) -> set[str]:
    return {
        node.func.id
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }


def unchecked_tests(source: str) -> list[str]:
    """Names of the test functions in ``source`` that check nothing (see the module doc)."""
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    helpers_that_check = {f.name for f in functions if _checks_directly(f)}
    tests = [
        f
        for scope in [tree, *(n for n in tree.body if isinstance(n, ast.ClassDef))]
        for f in scope.body
        if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")
    ]
    return [
        f.name
        for f in tests
        if not _checks_directly(f) and not (_called_names(f) & helpers_that_check)
    ]


def test_the_rule_tells_a_check_from_none() -> None:
    source = (
        "import pytest, subprocess\n"
        "def _same(a, b):\n    assert a == b\n"
        "def test_a():\n    assert 1\n"
        "def test_b():\n    with pytest.raises(ValueError):\n        int('x')\n"
        "def test_c():\n    _same(1, 1)\n"
        "def test_d():\n    subprocess.run(['true'], check=True)\n"
        "def test_none():\n    print(1)\n"
        "class TestX:\n    def test_method_none(self):\n        pass\n"
    )
    assert unchecked_tests(source) == ["test_none", "test_method_none"]


def test_every_test_checks_something() -> None:
    found = [
        f"{path.relative_to(ROOT)}::{name}"
        for path in TEST_FILES
        for name in unchecked_tests(path.read_text())
    ]
    assert found == [], "tests that cannot fail:\n" + "\n".join(found)


def test_no_conftest_drops_test_files() -> None:
    dropping = [
        str(path.relative_to(ROOT))
        for path in CONFTESTS
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Name)
        and node.id in {"collect_ignore", "collect_ignore_glob"}
        and isinstance(node.ctx, ast.Store)
    ]
    assert dropping == [], f"collect_ignore hides tests without a skip line: {dropping}"


def test_reference_libraries_are_not_skipped_for_a_whole_module() -> None:
    found = []
    for path in sorted(ROOT.glob("packages/*/tests/**/test_*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "importorskip"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and str(call.args[0].value).split(".")[0] in REFERENCE_LIBRARIES
                    and not isinstance(node, ast.FunctionDef | ast.ClassDef)
                ):
                    found.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert found == [], f"module-level importorskip of a reference library: {found}"


# Docstring examples marked ``# doctest: +SKIP`` in packages/*/src when the examples started
# to run (issue 16). Most can run in one process: unskip them and lower this number; a skip
# stays only for what needs several processes, a GPU or a missing service, with the reason.
SKIPPED_EXAMPLES_BASELINE = 292


def test_skipped_docstring_examples_only_go_down() -> None:
    count = sum(
        path.read_text().count("doctest: +SKIP") for path in ROOT.glob("packages/*/src/**/*.py")
    )
    assert count <= SKIPPED_EXAMPLES_BASELINE, (
        f"{count} docstring examples are skipped, more than the {SKIPPED_EXAMPLES_BASELINE} "
        "allowed: make the new example run (or give the skip's reason and raise the baseline "
        "in review)"
    )


def test_source_folders_never_shadow_top_level_packages() -> None:
    """Collecting the source's doctests puts no ``src/accel`` folder on ``sys.path`` (it made
    ``import deepspeed`` return accel.deepspeed for every later test)."""
    import sys

    assert [entry for entry in sys.path if entry.rstrip("/").endswith("/src/accel")] == []
    deepspeed = sys.modules.get("deepspeed")
    if deepspeed is not None:
        assert "accel-deepspeed" not in str(getattr(deepspeed, "__file__", "")), deepspeed
