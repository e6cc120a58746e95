"""The wheels build, contain only their own ``accel/<name>/``, and install into a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not on PATH; .ci/run installs it (pip install uv)")
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [_uv(), "build", "--all-packages", "--wheel", "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    built = sorted(out.glob("*.whl"))
    assert built, "uv build produced no wheel"
    return built


def test_each_wheel_ships_only_its_own_subpackage(wheels: list[Path]) -> None:
    for wheel in wheels:
        dist_name = wheel.name.split("-")[0].replace("_", "-")
        expected = "accel/" + dist_name.removeprefix("accel-").replace("-", "_") + "/"
        with zipfile.ZipFile(wheel) as archive:
            code = [n for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")]
        assert "accel/__init__.py" not in code, f"{wheel.name} ships accel/__init__.py"
        strays = [n for n in code if not n.startswith(expected)]
        assert not strays, f"{wheel.name} ships files outside {expected}: {strays}"


def test_wheels_install_into_a_fresh_venv_and_work(wheels: list[Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", str(python), *map(str, wheels)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    script = (
        "import accel.state, accel.ops, torch\n"
        "from accel.ops import gather, set_seed\n"
        "from accel.state import PartialState\n"
        "set_seed(0)\n"
        "s = PartialState(cpu=True)\n"
        "assert s.num_processes == 1 and s.device.type == 'cpu'\n"
        "assert gather({'x': torch.ones(2)})['x'].tolist() == [1.0, 1.0]\n"
        "import importlib.metadata as md\n"
        "assert md.version('accel-ops') == md.version('accel-state')\n"
        "print(accel.state.__file__)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    out = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert str(venv) in out.stdout, f"imported accel from outside the fresh venv: {out.stdout}"
