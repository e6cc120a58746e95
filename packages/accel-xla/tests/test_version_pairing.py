"""Version pairing of torch and torch-xla, read from package metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from accel.xla.versions import check_installed_pair, installed_version, pairing_problem, release


def test_release_reads_major_minor_and_ignores_local_tags() -> None:
    assert release("2.9.0+cu128") == (2, 9)
    assert release("2.10.1") == (2, 10)
    with pytest.raises(ValueError, match="cannot read a version number from 'nightly'"):
        release("nightly")


def test_same_major_minor_pairs() -> None:
    assert pairing_problem("2.9.0+cu128", "2.9.0") is None
    assert pairing_problem("2.9.1", "2.9.0") is None


def test_mismatch_names_both_versions_and_both_fixes() -> None:
    message = pairing_problem("2.10.0", "2.9.0")
    assert message is not None and "\n" not in message
    assert message.startswith("torch 2.10.0 and torch-xla 2.9.0 do not pair")
    assert "install torch==2.9.* to keep torch-xla 2.9.0" in message
    assert "or torch-xla==2.10.* to keep torch 2.10.0" in message


def _fake_distribution(root: Path, name: str, version: str) -> None:
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_installed_mismatch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Metadata of a torch-xla one minor release away from the installed torch, found first.
    major, minor = release(installed_version("torch") or "")
    _fake_distribution(tmp_path, "torch_xla", f"{major}.{minor + 1}.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError) as caught:
        check_installed_pair()
    message = str(caught.value)
    assert "\n" not in message
    assert f"and torch-xla {major}.{minor + 1}.0 do not pair" in message
    assert f"install torch=={major}.{minor + 1}.*" in message


def test_installed_pair_in_this_environment() -> None:
    torch_version = installed_version("torch")
    xla_version = installed_version("torch-xla")
    if xla_version is None:  # the dev environment
        with pytest.raises(RuntimeError, match="torch-xla is not installed in this Python"):
            check_installed_pair()
    elif pairing_problem(torch_version or "", xla_version) is None:  # the XLA environment
        assert check_installed_pair() == xla_version
    else:
        with pytest.raises(RuntimeError, match="do not pair"):
            check_installed_pair()
