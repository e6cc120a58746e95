"""Build every accel wheel and sdist and the ``accelerate`` compat wheel, then check them.

Checks, per distribution:
- ``twine check --strict``: the metadata and the README render on PyPI;
- the version is the workspace's ``VERSION`` (through the package's version template);
- every sibling requirement is pinned ``==VERSION`` (extras included);
- the wheel ships only ``accel/<name>/`` with ``py.typed``, no ``accel/__init__.py``, and
  the LICENSE; the compat wheel ships only ``accelerate/``, the ``accelerate`` command, and a
  version ``<API level>+accel<VERSION>`` matching ``accelerate/_version.py``; the sdist carries LICENSE, README, ``VERSION`` and the metadata hook, so it
  builds a wheel on its own (``uv build`` builds each wheel from its sdist);
- classifiers, keywords, the license expression, and a README with an install
  line and an example.

Usage::

    uv run python tools/release/check.py            # builds into a temporary folder
    uv run python tools/release/check.py --out dist # keeps the files

Example:
    >>> from tools.release.check import check_dist  # doctest: +SKIP
    >>> check_dist(Path("dist"), "0.1.0")  # doctest: +SKIP
    []
"""

from __future__ import annotations

import argparse
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDIST_FILES = ("LICENSE", "README.md", "pyproject.toml", "hatch_build.py", "VERSION", "PKG-INFO")
SDIST_FILES += ("_release/metadata_hook.py",)
REQUIRED_FIELDS = ("Classifier", "Keywords", "License-Expression", "Summary")


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def packages() -> dict[str, Path]:
    """Distribution name -> folder, for every workspace member.

    Example:
        >>> "accel-core" in packages()
        True
    """
    excluded = {
        (ROOT / path).resolve()
        for path in _toml(ROOT / "pyproject.toml")["tool"]["uv"]["workspace"].get("exclude", [])
    }
    found = {}
    for folder in sorted((ROOT / "packages").iterdir()):
        if (folder / "pyproject.toml").is_file() and folder.resolve() not in excluded:
            found[_toml(folder / "pyproject.toml")["project"]["name"]] = folder
    return found


COMPAT = ROOT / "packages" / "accel-compat"


def compat_package() -> tuple[str, Path]:
    """The ``accelerate`` compat wheel: distribution name and folder (not a workspace member:
    the dev group keeps the real accelerate, so it is built with its own ``uv build``).

    Example:
        >>> compat_package()[0]
        'accelerate'
    """
    return _toml(COMPAT / "pyproject.toml")["project"]["name"], COMPAT


def expected_version(folder: Path, base: str) -> str:
    """The version the package at ``folder`` must carry, given the workspace ``base`` version.

    Example:
        >>> expected_version(ROOT / "packages" / "accel-ops", "0.1.0")
        '0.1.0'
    """
    hook = _toml(folder / "pyproject.toml")["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    return str(hook.get("version", "{version}")).format(version=base)


def build(out: Path) -> None:
    """``uv build --all-packages`` into ``out``: an sdist per package, its wheel built from it."""
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH (pip install uv)")
    proc = subprocess.run(
        [uv, "build", "--all-packages", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"uv build failed:\n{proc.stderr}")
    proc = subprocess.run(
        [uv, "build", "-o", str(out), str(COMPAT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"uv build {COMPAT.name} failed:\n{proc.stderr}")


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def _sibling_pins(meta: email.message.Message, siblings: set[str], base: str) -> list[str]:
    problems = []
    for requirement in meta.get_all("Requires-Dist") or []:
        match = re.match(r"([A-Za-z0-9._-]+)\s*(\[[^\]]*\])?\s*([^;]*)", requirement)
        if match is None:
            problems.append(f"unreadable requirement {requirement!r}")
            continue
        name = match.group(1).lower().replace("_", "-")
        if name in siblings and match.group(3).strip() != f"=={base}":
            problems.append(f"sibling requirement {requirement!r} is not pinned =={base}")
    return problems


def _wheel_files(wheel: Path, dist: str) -> list[str]:
    own = "accel/" + dist.removeprefix("accel-").replace("-", "_") + "/"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    problems = []
    code = [n for n in names if ".dist-info/" not in n]
    if "accel/__init__.py" in code:
        problems.append("ships accel/__init__.py (accel is a namespace package)")
    strays = [n for n in code if not n.startswith(own)]
    if strays:
        problems.append(f"ships files outside {own}: {strays[:5]}")
    if f"{own}py.typed" not in names:
        problems.append(f"no {own}py.typed")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("no LICENSE in .dist-info/licenses/")
    return problems


def _compat_wheel(wheel: Path, version: str) -> list[str]:
    """The compat wheel ships ``accelerate/`` only, the ``accelerate`` command, and a version
    whose public part is the API level its code declares (``accelerate/_version.py``)."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        entry_points = archive.read(points).decode() if points else ""
    problems = []
    code = [n for n in names if ".dist-info/" not in n]
    strays = [n for n in code if not n.startswith("accelerate/")]
    if strays:
        problems.append(f"ships files outside accelerate/: {strays[:5]}")
    if "accelerate/__init__.py" not in code:
        problems.append("no accelerate/__init__.py")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("no LICENSE in .dist-info/licenses/")
    if "accelerate = accel.launch.cli:main" not in entry_points:
        problems.append("no `accelerate` console script (accel.launch.cli:main)")
    source = (COMPAT / "src" / "accelerate" / "_version.py").read_text(encoding="utf-8")
    level = re.search(r'^API_LEVEL = "([^"]+)"', source, re.MULTILINE)
    if level is None or version.split("+")[0] != level.group(1):
        declared = level.group(1) if level else "nothing"
        problems.append(
            f"version {version} does not start with the API level accelerate/_version.py "
            f"declares ({declared}); change both together"
        )
    return problems


def _sdist_files(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    return [f"sdist lacks {f}" for f in SDIST_FILES if f not in names]


def _description(meta: email.message.Message) -> list[str]:
    problems = [f"no {field}" for field in REQUIRED_FIELDS if not meta.get(field)]
    body = meta.get_payload()
    if not isinstance(body, str) or body.count("\n") < 15:
        problems.append("long description is shorter than 15 lines")
    elif "pip install" not in body or "```python" not in body:
        problems.append("long description has no install line or no python example")
    return problems


def check_dist(out: Path, base: str) -> list[str]:
    """Every problem found in the wheels and sdists in ``out`` (empty when all is well).

    Example:
        >>> check_dist(Path("dist"), "0.1.0")  # doctest: +SKIP
        []
    """
    members = packages()
    siblings = set(members)
    compat_name, compat_folder = compat_package()
    problems: list[str] = []
    for dist, folder in [*members.items(), (compat_name, compat_folder)]:
        stem = dist.replace("-", "_")
        version = expected_version(folder, base)
        wheel = out / f"{stem}-{version}-py3-none-any.whl"
        sdist = out / f"{stem}-{version}.tar.gz"
        missing = [p.name for p in (wheel, sdist) if not p.is_file()]
        if missing:
            problems.append(f"{dist}: {missing} not built (expected version {version})")
            continue
        meta = _metadata(wheel)
        found = [
            *_sibling_pins(meta, siblings, base),
            *(_compat_wheel(wheel, version) if dist == compat_name else _wheel_files(wheel, dist)),
            *_sdist_files(sdist),
            *_description(meta),
        ]
        problems += [f"{dist}: {p}" for p in found]
    twine = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            *map(str, sorted([*out.glob("*.whl"), *out.glob("*.tar.gz")])),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if twine.returncode != 0:
        problems.append(f"twine check --strict failed:\n{twine.stdout}{twine.stderr}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Build (unless ``--no-build``) and check; print the problems; 0 when there are none."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the built files")
    parser.add_argument("--no-build", action="store_true", help="check the files in --out")
    args = parser.parse_args(argv)
    if args.no_build and args.out is None:
        parser.error("--no-build needs --out (the folder holding the built files)")
    base = (ROOT / "VERSION").read_text().strip()
    out = args.out or Path(tempfile.mkdtemp(prefix="accel-dist-"))
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_build:
        build(out)
    problems = check_dist(out, base)
    for problem in problems:
        print(f"FAIL {problem}")
    count = len(list(out.glob("*.whl")))
    print(f"{'FAILED' if problems else 'OK'}: {count} wheels and sdists of {base} in {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
