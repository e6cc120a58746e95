"""The wheels as a user installs them: built once, installed into fresh venvs, used.

One session build (``tools/release/check.py``: every wheel and sdist, checked) feeds every
test. Each test makes one venv with ``uv venv`` + ``uv pip install --find-links <built>``;
torch, transformers and the rest come from PyPI through uv's cache, at the versions of the
dev environment (so a warm cache is a cache hit). Each venv runs several checks.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = (ROOT / "VERSION").read_text().strip()
INSTALL_TIMEOUT = 900  # a cold uv cache downloads torch (~3 GB)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TRAIN = """\
import torch
from torch.utils.data import DataLoader, TensorDataset
from accel.core import Accelerator, set_seed

set_seed(0)
accelerator = Accelerator()
x = torch.randn(256, 8)
y = x @ torch.randn(8, 1)
loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
for epoch in range(3):
    for inputs, targets in loader:
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
final = accelerator.gather(loss.detach()[None]).mean().item()
print(f"rank {accelerator.process_index}/{accelerator.num_processes} loss {final:.5f}")
accelerator.end_training()
"""

BIG_MODEL = """\
import importlib.util, sys, torch, transformers
from accel.big_model import load_checkpoint_and_dispatch, init_empty_weights

for missing in ("accel.core", "accel.launch"):
    assert importlib.util.find_spec(missing) is None, f"{missing} is installed"
folder, offload = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
    max_position_embeddings=64)
reference = transformers.LlamaForCausalLM(config).eval()
reference.save_pretrained(folder, max_shard_size="200KB")
with init_empty_weights():
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
    "model.layers.1": "disk", "model.layers.2": "cpu", "model.layers.3": "disk",
    "model.norm": "disk", "lm_head": "disk"}
model = load_checkpoint_and_dispatch(model, folder, device_map=device_map,
    offload_folder=offload, no_split_module_classes=["LlamaDecoderLayer"])
ids = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    expected = reference.generate(ids, max_new_tokens=8, do_sample=False)
    got = model.generate(ids, max_new_tokens=8, do_sample=False)
assert torch.equal(expected, got), (expected, got)
print("placed on", sorted(set(model.hf_device_map.values())), "generate equal")
"""


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not on PATH; .ci/run installs it (pip install uv)")
    return found


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300, cwd=None):
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd, check=False
    )


@pytest.fixture(scope="session")
def dist() -> Iterator[Path]:
    """Every wheel and sdist, built and checked by ``tools/release/check.py``.

    The folder name is new for every build: uv caches ``--find-links`` wheels by folder and
    file name, and would otherwise install an older build of the same version.
    """
    out = Path(tempfile.mkdtemp(prefix="accel-dist-"))
    proc = _run([sys.executable, str(ROOT / "tools/release/check.py"), "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield out
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev environment's torch and transformers versions (a warm uv cache has them)."""
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    pins = [f"{n}=={importlib.metadata.version(n)}" for n in ("torch", "transformers", "numpy")]
    path.write_text("\n".join(pins) + "\n")
    return path


@pytest.fixture(scope="session")
def slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where each test makes its fresh venv, one after another, and their bytecode cache.

    uv installs every venv's files as hard links of its cache: torch's ``linear.py`` is the
    same file (same size and mtime) at the same path in each venv made here, so the ``.pyc``
    that one venv's interpreters write under ``PYTHONPYCACHEPREFIX`` are valid in the next and
    an import of torch or transformers no longer compiles them again (7 CPU s for the
    big-model script's first run). A ``.pyc`` is checked against its source's mtime and size:
    a file that differs (the freshly built accel wheels) compiles. The folder is one per
    checkout and kept between sessions; a second session of the same checkout running at the
    same time gets a folder of its own.
    """
    kept = Path.home() / ".cache" / "accel-tests" / f"wheel-venv-{_checkout_id()}"
    kept.mkdir(parents=True, exist_ok=True)
    with open(kept / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield tmp_path_factory.mktemp("venv-slot")
            return
        yield kept
        shutil.rmtree(kept / "venv", ignore_errors=True)


def _checkout_id() -> str:
    return hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]


class Venv:
    """A fresh venv with the built wheels on ``--find-links``; commands run in a clean env.

    The venv replaces the previous test's in ``slot`` (see ``slot``); scripts and HOME live in
    ``folder``.
    """

    def __init__(self, folder: Path, dist: Path, constraints: Path, slot: Path) -> None:
        self.folder, self.dist, self.constraints = folder, dist, constraints
        self.pycache = slot / "pycache"
        shutil.rmtree(slot / "venv", ignore_errors=True)
        proc = _run([_uv(), "venv", "-q", "--python", sys.executable, str(slot / "venv")])
        assert proc.returncode == 0, proc.stderr
        self.bin = slot / "venv" / "bin"
        self.home = folder / "home"
        self.home.mkdir(parents=True)

    def install(self, *requirements: str, dry_run: bool = False) -> subprocess.CompletedProcess:
        args = [_uv(), "pip", "install", "--python", str(self.bin / "python")]
        args += ["--find-links", str(self.dist), "--constraint", str(self.constraints)]
        for wheel in self.dist.glob("*.whl"):  # never a cached older build of this version
            args += ["--refresh-package", wheel.name.split("-")[0].replace("_", "-")]
        args += ["--dry-run"] if dry_run else []
        env = {**os.environ, "NO_COLOR": "1"}
        return _run([*args, *requirements], env=env, timeout=INSTALL_TIMEOUT)

    def env(self) -> dict[str, str]:
        # No PATH entry for the venv: commands run by full path, as `accel env` must handle.
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "OMP_NUM_THREADS": "1",
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", ""),
            "PYTHONPYCACHEPREFIX": str(self.pycache),
        }

    def accel(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run([str(self.bin / "accel"), *args], env=self.env(), timeout=timeout)

    def python(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(
            [str(self.bin / "python"), *args], env=self.env(), timeout=timeout, cwd=self.folder
        )


def _quiet(proc: subprocess.CompletedProcess, what: str) -> None:
    """``proc`` succeeded and printed no warning."""
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "warning" not in proc.stderr.lower(), f"{what} warned:\n{proc.stderr}"


def test_accel_core_cuda_installs_and_trains(
    dist: Path, constraints: Path, slot: Path, tmp_path: Path
) -> None:
    venv = Venv(tmp_path, dist, constraints, slot)
    _quiet(venv.install(f"accel-core[cuda]=={VERSION}"), "install accel-core[cuda]")
    site = venv.python("-c", "import accel.core, pynvml; print(accel.core.__file__)")
    assert str(venv.bin.parent) in site.stdout, site.stdout + site.stderr

    helped = venv.accel("--help")
    _quiet(helped, "accel --help")
    assert "test" in helped.stdout and "estimate-memory" in helped.stdout

    env = venv.accel("env")
    _quiet(env, "accel env")
    assert f"accel-core version: {VERSION}" in env.stdout
    assert "- NVML: " in env.stdout and "not installed" not in env.stdout, env.stdout
    assert f"{venv.bin / 'accel'} (its folder is not on PATH)" in env.stdout, env.stdout

    tested = venv.accel("test", timeout=600)
    _quiet(tested, "accel test")

    (tmp_path / "train.py").write_text(TRAIN)
    launched = venv.accel(
        "launch", "--cpu", "--num_processes", "2", str(tmp_path / "train.py"), timeout=600
    )
    _quiet(launched, "accel launch")
    assert "rank 0/2" in launched.stdout and "rank 1/2" in launched.stdout, launched.stdout


def test_bad_input_mismatched_versions_and_missing_extra(
    dist: Path, constraints: Path, slot: Path, tmp_path: Path
) -> None:
    """A wheel of accel-state from another release does not install beside accel-core, nor
    import when forced in; an extra that does not exist is named."""
    # A checkout of another release: the same layout with another VERSION (an sdist would
    # not do: its PKG-INFO freezes the version it was made with).
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "tests")
    shutil.copytree(
        ROOT / "packages" / "accel-state", checkout / "packages" / "accel-state", ignore=ignore
    )
    shutil.copytree(ROOT / "tools" / "release", checkout / "tools" / "release", ignore=ignore)
    (checkout / "VERSION").write_text("0.0.1\n")
    source = checkout / "packages" / "accel-state"
    other = tmp_path / "other"
    built = _run([_uv(), "build", "--wheel", "-o", str(other), str(source)])
    assert built.returncode == 0, built.stderr
    wheel = other / "accel_state-0.0.1-py3-none-any.whl"
    assert wheel.is_file(), list(other.iterdir())

    # A package may render VERSION through its own template (accel-compat publishes
    # "accelerate 1.15.0+accel<VERSION>"); a bad VERSION fails the build, naming file and value.
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "[tool.hatch.metadata.hooks.custom]\n",
            '[tool.hatch.metadata.hooks.custom]\nversion = "1.15.0+accel{version}"\n',
        )
    )
    templated = _run([_uv(), "build", "--wheel", "-o", str(other), str(source)])
    assert (other / "accel_state-1.15.0+accel0.0.1-py3-none-any.whl").is_file(), templated.stderr
    (checkout / "VERSION").write_text("0.0.1-final\n")
    bad = _run([_uv(), "build", "--wheel", "-o", str(other), str(source)])
    assert bad.returncode != 0
    assert "'0.0.1-final' is not a release version" in bad.stderr, bad.stderr

    venv = Venv(tmp_path / "v", dist, constraints, slot)
    # An extra that does not exist is named in one line.
    nosuch = venv.install(f"accel-core[nosuch]=={VERSION}", dry_run=True)
    assert "does not have an extra named `nosuch`" in nosuch.stderr, nosuch.stderr

    refused = venv.install(f"accel-core=={VERSION}", str(wheel), dry_run=True)
    assert refused.returncode != 0
    assert f"accel-core depend on accel-state=={VERSION}" in refused.stderr, refused.stderr

    # Forced past the resolver (--no-deps), the import says so in one line.
    _quiet(venv.install(f"accel-core=={VERSION}"), "install accel-core")
    forced = venv.install("--no-deps", str(wheel))
    assert forced.returncode == 0, forced.stderr
    imported = venv.python("-c", "import accel.core")
    assert imported.returncode != 0
    last = imported.stderr.strip().splitlines()[-1]
    assert last == (
        f"accel.state.versions.MixedReleaseError: accel-core {VERSION} needs "
        f"accel-state=={VERSION} but accel-state 0.0.1 is installed; install one release of "
        f"accel: pip install 'accel-core=={VERSION}' 'accel-state=={VERSION}'"
    ), imported.stderr


def test_accel_big_model_alone_offloads_a_transformers_model(
    dist: Path, constraints: Path, slot: Path, tmp_path: Path
) -> None:
    venv = Venv(tmp_path, dist, constraints, slot)
    _quiet(venv.install(f"accel-big-model=={VERSION}", "transformers"), "install big-model")
    assert not (venv.bin / "accel").exists(), "accel-big-model alone brought the accel command"
    (tmp_path / "big.py").write_text(BIG_MODEL)
    ran = venv.python(str(tmp_path / "big.py"), str(tmp_path / "model"), str(tmp_path / "off"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "placed on ['cpu', 'disk'] generate equal" in ran.stdout, ran.stdout


def test_accel_launch_alone(dist: Path, constraints: Path, slot: Path, tmp_path: Path) -> None:
    venv = Venv(tmp_path, dist, constraints, slot)
    _quiet(venv.install(f"accel-launch=={VERSION}"), "install accel-launch")

    _quiet(venv.accel("--help"), "accel --help")
    env = venv.accel("env")
    _quiet(env, "accel env")
    assert "- NVML: unavailable: nvidia-ml-py is not installed" in env.stdout, env.stdout
    assert "accel-core version" not in env.stdout

    configured = venv.accel("config", "default")
    _quiet(configured, "accel config default")
    assert (venv.home / ".config" / "accel" / "default_config.yaml").is_file(), configured.stdout

    for command, wheel in (("test", "accel-core"), ("estimate-memory", "accel-big-model")):
        missing = venv.accel(command)
        assert missing.returncode != 0
        assert f"pip install {wheel}" in missing.stderr + missing.stdout, missing.stderr
