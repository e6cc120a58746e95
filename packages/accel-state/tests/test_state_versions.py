"""require_siblings: installed accel wheels of different releases give one clear ImportError."""

from __future__ import annotations

from pathlib import Path

import pytest

from accel.state.nvml import nvml_free_memory, nvml_report
from accel.state.versions import MixedReleaseError, require_siblings


def _install_fake(site: Path, name: str, version: str, requires: list[str]) -> None:
    """A real dist-info folder, as pip writes it, on sys.path."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_matching_release_passes_and_extras_are_not_checked(site: Path) -> None:
    _install_fake(site, "accel-fakea", "0.3.0", ["accel-fakeb==0.3.0", "torch>=2.4"])
    _install_fake(site, "accel-fakeb", "0.3.0", [])
    _install_fake(site, "accel-fakec", "0.3.0", ["accel-fakeb[x]==0.3.0; extra == 'x'"])
    assert require_siblings("accel-fakea") is None
    assert require_siblings("accel-fakec") is None
    # source tree on sys.path: no check
    assert require_siblings("accel-not-installed-anywhere") is None


def test_mixed_release_names_both_versions_and_the_fix(site: Path) -> None:
    _install_fake(site, "accel-fakea", "0.3.0", ["accel-fakeb==0.3.0"])
    _install_fake(site, "accel-fakeb", "0.2.0", [])
    with pytest.raises(MixedReleaseError) as err:
        require_siblings("accel-fakea")
    assert str(err.value) == (
        "accel-fakea 0.3.0 needs accel-fakeb==0.3.0 but accel-fakeb 0.2.0 is installed; "
        "install one release of accel: pip install 'accel-fakea==0.3.0' 'accel-fakeb==0.3.0'"
    )
    assert isinstance(err.value, ImportError)


def test_missing_sibling_is_named(site: Path) -> None:
    _install_fake(site, "accel-fakea", "0.3.0", ["accel-fakegone==0.3.0"])
    with pytest.raises(MixedReleaseError, match="accel-fakegone is not installed"):
        require_siblings("accel-fakea")


def test_nvml_answers_or_says_why() -> None:
    report = nvml_report()
    if report.available:
        assert report.driver_version and report.summary().startswith("driver ")
    else:
        assert report.reason and report.summary() == f"unavailable: {report.reason}"
        assert nvml_free_memory(["GPU-00000000-0000-0000-0000-000000000000"]) in (None, {})
