"""The enums carry Accelerate's exact names and string values (checked against accelerate)."""

from __future__ import annotations

import pytest

import accel.state
from accel.state import enums


@pytest.fixture
def accelerate_utils():
    """Accelerate's enums: only the comparisons with the reference need it."""
    return pytest.importorskip("accelerate.utils")


NAMES = [
    "DistributedType",
    "PrecisionType",
    "RNGType",
    "LoggerType",
    "DynamoBackend",
    "ComputeEnvironment",
    "SageMakerDistributedType",
    "CustomDtype",
]

EXPECTED = {
    "DistributedType": {
        "NO": "NO",
        "MULTI_CPU": "MULTI_CPU",
        "MULTI_GPU": "MULTI_GPU",
        "MULTI_NPU": "MULTI_NPU",
        "MULTI_MLU": "MULTI_MLU",
        "MULTI_SDAA": "MULTI_SDAA",
        "MULTI_MUSA": "MULTI_MUSA",
        "MULTI_XPU": "MULTI_XPU",
        "DEEPSPEED": "DEEPSPEED",
        "FSDP": "FSDP",
        "XLA": "XLA",
        "MEGATRON_LM": "MEGATRON_LM",
        "MULTI_HPU": "MULTI_HPU",
        "MULTI_NEURON": "MULTI_NEURON",
    },
    "PrecisionType": {"NO": "no", "FP8": "fp8", "FP16": "fp16", "BF16": "bf16"},
    "RNGType": {
        "TORCH": "torch",
        "CUDA": "cuda",
        "MLU": "mlu",
        "SDAA": "sdaa",
        "MUSA": "musa",
        "NPU": "npu",
        "XLA": "xla",
        "XPU": "xpu",
        "HPU": "hpu",
        "NEURON": "neuron",
        "GENERATOR": "generator",
    },
    "LoggerType": {
        "ALL": "all",
        "AIM": "aim",
        "TENSORBOARD": "tensorboard",
        "WANDB": "wandb",
        "TRACKIO": "trackio",
        "COMETML": "comet_ml",
        "MLFLOW": "mlflow",
        "CLEARML": "clearml",
        "DVCLIVE": "dvclive",
        "SWANLAB": "swanlab",
    },
    "DynamoBackend": {
        name: name
        for name in (
            "NO",
            "EAGER",
            "AOT_EAGER",
            "INDUCTOR",
            "AOT_TS_NVFUSER",
            "NVPRIMS_NVFUSER",
            "CUDAGRAPHS",
            "OFI",
            "FX2TRT",
            "ONNXRT",
            "TENSORRT",
            "AOT_TORCHXLA_TRACE_ONCE",
            "TORCHXLA_TRACE_ONCE",
            "TVM",
            "HPU_BACKEND",
            "NEURON",
        )
    },
    "ComputeEnvironment": {
        "LOCAL_MACHINE": "LOCAL_MACHINE",
        "AMAZON_SAGEMAKER": "AMAZON_SAGEMAKER",
    },
    "SageMakerDistributedType": {
        "NO": "NO",
        "DATA_PARALLEL": "DATA_PARALLEL",
        "MODEL_PARALLEL": "MODEL_PARALLEL",
    },
    "CustomDtype": {"FP8": "fp8", "INT4": "int4", "INT2": "int2"},
}


@pytest.mark.parametrize("name", NAMES)
def test_values_match_pinned_table(name):
    ours = getattr(enums, name)
    assert {m.name: m.value for m in ours} == EXPECTED[name]


@pytest.mark.parametrize("name", NAMES)
def test_members_match_accelerate_in_order(name, accelerate_utils):
    ours = getattr(enums, name)
    theirs = getattr(accelerate_utils, name)
    assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "CustomDtype"])
def test_str_list_contains_and_str_subclass(name, accelerate_utils):
    ours = getattr(enums, name)
    theirs = getattr(accelerate_utils, name)
    assert issubclass(ours, str) == issubclass(theirs, str)
    if hasattr(theirs, "list"):
        # Accelerate's BaseEnum family: same list() and str()
        assert ours.list() == theirs.list()
        for ours_member, their_member in zip(ours, theirs):
            assert str(ours_member) == str(their_member)
    # accel gives every enum list(), str() == value and `value in Enum` (Accelerate's plain
    # str enums, e.g. DistributedType, lack them; a superset is compatible)
    assert ours.list() == [m.value for m in theirs]
    for member in ours:
        assert str(member) == member.value
        assert member.value in ours
        assert ours(member.value) is member
    assert "definitely-not-a-member" not in ours


def test_exported_from_package():
    for name in NAMES:
        assert getattr(accel.state, name) is getattr(enums, name)


def test_precision_type_contains_and_list():
    from accel.state import PrecisionType

    assert "bf16" in PrecisionType
    assert "fp16" in PrecisionType
    assert "fp32" not in PrecisionType
    assert "BF16" not in PrecisionType  # values are case-sensitive, as in Accelerate
    assert 16 not in PrecisionType
    assert PrecisionType.list() == ["no", "fp8", "fp16", "bf16"]
    assert PrecisionType.BF16 == "bf16"
    assert PrecisionType("bf16") is PrecisionType.BF16


def test_distributed_type_compares_with_its_string():
    from accel.state import DistributedType

    assert DistributedType.MULTI_GPU == "MULTI_GPU"
    assert str(DistributedType.FSDP) == "FSDP"
    assert f"{DistributedType.NO}" == "NO"
    assert {DistributedType.NO: 1}["NO"] == 1


def test_logger_and_rng_types_are_not_str_subclasses_but_str_to_value():
    from accel.state import LoggerType, RNGType

    assert str(LoggerType.COMETML) == "comet_ml"
    assert str(RNGType.GENERATOR) == "generator"
    assert "wandb" in LoggerType
    assert "cpu" not in RNGType
