"""Hatchling metadata hook shared by every accel wheel: one version, exact sibling pins.

Each ``packages/<dist>/hatch_build.py`` loads this file (sdists carry a copy in
``_release/``). At build time it fills the fields a package lists in ``[project] dynamic``:

- ``version``: the workspace's single ``VERSION`` file, rendered through the package's
  ``[tool.hatch.metadata.hooks.custom] version`` template (default ``"{version}"``; a wheel published under
  another name can say e.g. ``"1.15.0+accel{version}"``).
- ``dependencies`` and ``optional-dependencies``: from ``[tool.hatch.metadata.hooks.custom]``; a sibling
  (a name that ``[tool.uv.sources]`` marks ``workspace = true``, or that the hook's own
  ``siblings`` list names, for a wheel outside the workspace such as the ``accelerate`` compat
  wheel) written without a version gets ``==<VERSION>``, so the wheels of one release always
  install together.
- ``classifiers``: the ones every accel wheel shares, plus the package's
  ``[tool.hatch.metadata.hooks.custom] classifiers``.

No project URLs: the repository declares no public home (no remote, no published docs), so
the wheels carry none rather than a made-up address.

``VERSION`` is looked up in the project folder first (an sdist), then in its parents (the
workspace).

Example (``packages/accel-ops/pyproject.toml``)::

    [project]
    dynamic = ["version", "dependencies", "classifiers"]
    [tool.hatch.metadata.hooks.custom]
    dependencies = ["accel-state", "numpy>=1.22", "torch>=2.4"]
    [tool.uv.sources]
    accel-state = { workspace = true }
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

CLASSIFIERS = [
    "Development Status :: 3 - Alpha",
    "Intended Audience :: Developers",
    "Intended Audience :: Science/Research",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3 :: Only",
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
    "Typing :: Typed",
]
# PEP 440 public versions: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev4 (no local part here).
_VERSION_RE = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def find_version_file(root: Path) -> Path:
    """The ``VERSION`` file for the project at ``root``: its own (sdist) or the nearest parent's.

    Example:
        >>> find_version_file(Path("packages/accel-ops")).name  # doctest: +SKIP
        'VERSION'
    """
    for folder in (root, *root.resolve().parents):
        candidate = folder / "VERSION"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no VERSION file in {root} or its parents: the workspace root's VERSION is the one "
        "version of every accel wheel (an sdist carries a copy)"
    )


def read_version(path: Path) -> str:
    """The release version written in ``path``, checked against PEP 440.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "VERSION"; _ = f.write_text("0.2.0\\n")
        >>> read_version(f)
        '0.2.0'
    """
    text = path.read_text(encoding="utf-8").strip()
    if not _VERSION_RE.match(text):
        raise ValueError(
            f"{path}: {text!r} is not a release version; write one PEP 440 public version "
            "such as 0.2.0, 0.2.0rc1 or 0.2.0.post1 on one line"
        )
    return text


def pin_siblings(
    requirements: list[str], siblings: set[str], version: str, where: str
) -> list[str]:
    """Add ``==version`` to the siblings in ``requirements``; refuse a sibling with its own pin.

    Example:
        >>> pin_siblings(["accel-state", "torch>=2.4", "accel-ops[x]"], {"accel-state", "accel-ops"}, "0.2.0", "t")
        ['accel-state==0.2.0', 'torch>=2.4', 'accel-ops[x]==0.2.0']
    """
    pinned = []
    for requirement in requirements:
        match = _NAME_RE.match(requirement)
        if match is None:
            raise ValueError(f"{where}: {requirement!r} is not a requirement")
        name, extras, rest = match.group(1), match.group(2) or "", match.group(3)
        if name.lower().replace("_", "-") not in siblings:
            pinned.append(requirement)
            continue
        if rest and not rest.startswith(";"):
            raise ValueError(
                f"{where}: sibling {requirement!r} carries its own version; write just "
                f"{name!r} (every sibling is pinned to the workspace VERSION, {version})"
            )
        marker = f" {rest}" if rest else ""
        pinned.append(f"{name}{extras}=={version}{marker}")
    return pinned


class AccelMetadataHook(MetadataHookInterface):
    """Fills version, dependencies, extras and classifiers (see the module docstring).

    Example (``pyproject.toml``)::

        [tool.hatch.metadata.hooks.custom]   # loads hatch_build.py, which returns this class
    """

    PLUGIN_NAME = "accel-release"

    def update(self, metadata: dict[str, Any]) -> None:
        """Fill the dynamic fields of ``metadata`` (hatchling calls this once per build)."""
        root = Path(self.root)
        where = f"{root / 'pyproject.toml'} [tool.hatch.metadata.hooks.custom]"
        dynamic = set(metadata.get("dynamic", []))
        base = read_version(find_version_file(root))
        template = self.config.get("version", "{version}")
        if "{version}" not in template:
            raise ValueError(f"{where}: version = {template!r} must contain '{{version}}'")
        siblings = _workspace_siblings(root) | _listed_siblings(self.config, where)
        if "version" in dynamic:
            metadata["version"] = template.format(version=base)
        if "dependencies" in dynamic:
            metadata["dependencies"] = pin_siblings(
                list(self.config.get("dependencies", [])), siblings, base, where
            )
        if "optional-dependencies" in dynamic:
            metadata["optional-dependencies"] = {
                extra: pin_siblings(list(reqs), siblings, base, f"{where} extra {extra!r}")
                for extra, reqs in self.config.get("optional-dependencies", {}).items()
            }
        if "classifiers" in dynamic:
            metadata["classifiers"] = sorted({*CLASSIFIERS, *self.config.get("classifiers", [])})


def _listed_siblings(config: dict[str, Any], where: str) -> set[str]:
    """The hook's ``siblings = [...]``: accel wheels a project outside the workspace depends on.

    Example:
        >>> sorted(_listed_siblings({"siblings": ["accel_core", "accel-ops"]}, "t"))
        ['accel-core', 'accel-ops']
    """
    listed = config.get("siblings", [])
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise ValueError(f"{where}: siblings = {listed!r} must be a list of distribution names")
    return {name.lower().replace("_", "-") for name in listed}


def _workspace_siblings(root: Path) -> set[str]:
    """Names ``[tool.uv.sources]`` marks ``workspace = true`` in the project's pyproject."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: hatchling itself depends on tomli there
        import tomli as tomllib
    with open(root / "pyproject.toml", "rb") as handle:
        data = tomllib.load(handle)
    sources = data.get("tool", {}).get("uv", {}).get("sources", {})
    return {
        name.lower().replace("_", "-")
        for name, source in sources.items()
        if isinstance(source, dict) and source.get("workspace") is True
    }
