"""is_torch_version / is_*_available, and InitProcessGroupKwargs."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from datetime import timedelta

import pytest

from accel.state import InitProcessGroupKwargs, KwargsHandler, availability


def _torch_release() -> str:
    raw = importlib.metadata.version("torch")
    return re.match(r"\d+(?:\.\d+)*", raw).group(0)


def _bump(release: str, delta: int) -> str:
    major, minor, *_ = (int(p) for p in release.split("."))
    return f"{major}.{minor + delta}"


def test_is_torch_version_every_operator():
    current = _torch_release()
    newer = _bump(current, 1)
    older = f"{int(current.split('.')[0]) - 1}.0"
    table = [
        (">", older, True),
        (">", current, False),
        (">=", current, True),
        (">=", newer, False),
        ("==", current, True),
        ("==", newer, False),
        ("!=", current, False),
        ("!=", older, True),
        ("<=", current, True),
        ("<=", older, False),
        ("<", newer, True),
        ("<", current, False),
    ]
    for op, version, expected in table:
        assert availability.is_torch_version(op, version) is expected, (op, version)


def test_is_torch_version_bad_operator_names_it_and_valid_ones():
    with pytest.raises(ValueError) as info:
        availability.is_torch_version("=>", "2.0")
    message = str(info.value)
    assert "'=>'" in message
    for op in (">", ">=", "==", "!=", "<=", "<"):
        assert op in message


def test_compare_versions_ignores_local_tag_and_trailing_zeros():
    assert availability.compare_versions("2.5.1+cu128", "==", "2.5.1")
    assert availability.compare_versions("2.5.0", "==", "2.5")
    assert availability.compare_versions("2.10", ">", "2.9")  # numeric, not lexical
    assert availability.compare_versions("2.4.1", "<", "2.5")


def test_compare_versions_unreadable_version_errors():
    with pytest.raises(ValueError, match="'abc'"):
        availability.compare_versions("abc", ">=", "1.0")


CHECKS = [
    availability.is_bf16_available,
    availability.is_cuda_available,
    availability.is_datasets_available,
    availability.is_deepspeed_available,
    availability.is_ipex_available,
    availability.is_mps_available,
    availability.is_npu_available,
    availability.is_safetensors_available,
    availability.is_torch_xla_available,
    availability.is_tpu_available,
    availability.is_transformers_available,
    availability.is_xpu_available,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_availability_checks_return_bool(check):
    assert type(check()) is bool


@pytest.mark.parametrize(
    "check, module",
    [
        (availability.is_deepspeed_available, "deepspeed"),
        (availability.is_datasets_available, "datasets"),
        (availability.is_transformers_available, "transformers"),
        (availability.is_safetensors_available, "safetensors"),
        (availability.is_ipex_available, "intel_extension_for_pytorch"),
        (availability.is_torch_xla_available, "torch_xla"),
        (availability.is_npu_available, "torch_npu"),
    ],
)
def test_availability_does_not_import_the_package(check, module):
    before = module in sys.modules
    result = check()
    assert (module in sys.modules) == before
    if module != "torch_npu":
        assert result == availability.is_package_available(module)


def test_is_package_available_finds_without_importing(tmp_path, monkeypatch):
    name = "accel_probe_pkg_for_tests"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    availability.is_package_available.cache_clear()
    try:
        assert availability.is_package_available(name) is True
        assert name not in sys.modules
        assert availability.is_package_available("accel_no_such_package_xyz") is False
        assert availability.is_package_available("accel_no_such_package_xyz.sub") is False
    finally:
        availability.is_package_available.cache_clear()


def test_deepspeed_availability_follows_the_installation(monkeypatch):
    """True where DeepSpeed is installed (the dev group has it), False where it is not."""
    availability.is_package_available.cache_clear()
    try:
        installed = importlib.util.find_spec("deepspeed") is not None
        assert availability.is_deepspeed_available() is installed
        # a name mapped to None in sys.modules is one Python cannot import: not available
        monkeypatch.setitem(sys.modules, "deepspeed", None)
        availability.is_package_available.cache_clear()
        assert availability.is_deepspeed_available() is False
    finally:
        availability.is_package_available.cache_clear()


def test_torch_xla_checks_read_pjrt_device_only_when_installed(monkeypatch):
    monkeypatch.setenv("PJRT_DEVICE", "TPU")
    installed = availability.is_package_available("torch_xla")
    assert availability.is_torch_xla_available(check_is_tpu=True) is installed
    assert availability.is_tpu_available() is installed
    assert availability.is_torch_xla_available(check_is_gpu=True) is False


# InitProcessGroupKwargs


def test_init_process_group_kwargs_defaults_give_empty_kwargs():
    assert InitProcessGroupKwargs().to_kwargs() == {}
    assert isinstance(InitProcessGroupKwargs(), KwargsHandler)


def test_init_process_group_kwargs_only_non_defaults():
    timeout = timedelta(seconds=90)
    assert InitProcessGroupKwargs(backend="gloo").to_kwargs() == {"backend": "gloo"}
    assert InitProcessGroupKwargs(timeout=timeout).to_kwargs() == {"timeout": timeout}
    assert InitProcessGroupKwargs(
        backend="gloo", init_method="tcp://127.0.0.1:1", timeout=timeout
    ).to_kwargs() == {"backend": "gloo", "init_method": "tcp://127.0.0.1:1", "timeout": timeout}


def test_init_process_group_kwargs_to_dict_has_all_fields():
    assert InitProcessGroupKwargs().to_dict() == {
        "backend": None,
        "init_method": None,
        "timeout": None,
    }


@pytest.mark.parametrize("bad", [30, 1.5, "30"])
def test_init_process_group_kwargs_bad_timeout_type(bad):
    with pytest.raises(TypeError) as info:
        InitProcessGroupKwargs(timeout=bad)
    assert "timeout" in str(info.value)
    assert repr(bad) in str(info.value)
    assert "timedelta" in str(info.value)


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1)])
def test_init_process_group_kwargs_non_positive_timeout(bad):
    with pytest.raises(ValueError, match="positive"):
        InitProcessGroupKwargs(timeout=bad)
