"""Enumerations shared by every accel package, with Accelerate's string values.

Torch-free so that the launcher and config tools can use them.
"""

from __future__ import annotations

import enum


class _ContainsByValue(enum.EnumMeta):
    def __contains__(cls, item: object) -> bool:
        try:
            cls(item)
        except ValueError:
            return False
        return True


class BaseEnum(enum.Enum, metaclass=_ContainsByValue):
    """An enum whose ``str()`` is its value and that supports ``"value" in Enum``.

    Example:
        >>> "bf16" in PrecisionType
        True
    """

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def list(cls) -> list[str]:
        """All values of the enum, as strings.

        Example:
            >>> PrecisionType.list()
            ['no', 'fp8', 'fp16', 'bf16']
        """
        return [str(member) for member in cls]


class ComputeEnvironment(str, BaseEnum):
    """Where the job runs.

    Example:
        >>> ComputeEnvironment("LOCAL_MACHINE") is ComputeEnvironment.LOCAL_MACHINE
        True
    """

    LOCAL_MACHINE = "LOCAL_MACHINE"
    AMAZON_SAGEMAKER = "AMAZON_SAGEMAKER"


class DistributedType(str, BaseEnum):
    """The kind of distributed setup in use.

    Example:
        >>> DistributedType.MULTI_CPU == "MULTI_CPU"
        True
    """

    NO = "NO"
    MULTI_CPU = "MULTI_CPU"
    MULTI_GPU = "MULTI_GPU"
    MULTI_NPU = "MULTI_NPU"
    MULTI_MLU = "MULTI_MLU"
    MULTI_SDAA = "MULTI_SDAA"
    MULTI_MUSA = "MULTI_MUSA"
    MULTI_XPU = "MULTI_XPU"
    DEEPSPEED = "DEEPSPEED"
    FSDP = "FSDP"
    XLA = "XLA"
    MEGATRON_LM = "MEGATRON_LM"
    MULTI_HPU = "MULTI_HPU"
    MULTI_NEURON = "MULTI_NEURON"


class DynamoBackend(str, BaseEnum):
    """Backends of ``torch.compile`` accepted by ``TorchDynamoPlugin``.

    Example:
        >>> DynamoBackend("INDUCTOR").value.lower()
        'inductor'
    """

    NO = "NO"
    EAGER = "EAGER"
    AOT_EAGER = "AOT_EAGER"
    INDUCTOR = "INDUCTOR"
    AOT_TS_NVFUSER = "AOT_TS_NVFUSER"
    NVPRIMS_NVFUSER = "NVPRIMS_NVFUSER"
    CUDAGRAPHS = "CUDAGRAPHS"
    OFI = "OFI"
    FX2TRT = "FX2TRT"
    ONNXRT = "ONNXRT"
    TENSORRT = "TENSORRT"
    AOT_TORCHXLA_TRACE_ONCE = "AOT_TORCHXLA_TRACE_ONCE"
    TORCHXLA_TRACE_ONCE = "TORCHXLA_TRACE_ONCE"
    TVM = "TVM"
    HPU_BACKEND = "HPU_BACKEND"
    NEURON = "NEURON"


class LoggerType(BaseEnum):
    """Experiment trackers known to ``log_with``.

    Example:
        >>> str(LoggerType.TENSORBOARD)
        'tensorboard'
    """

    ALL = "all"
    AIM = "aim"
    TENSORBOARD = "tensorboard"
    WANDB = "wandb"
    TRACKIO = "trackio"
    COMETML = "comet_ml"
    MLFLOW = "mlflow"
    CLEARML = "clearml"
    DVCLIVE = "dvclive"
    SWANLAB = "swanlab"


class PrecisionType(str, BaseEnum):
    """Mixed-precision modes.

    Example:
        >>> PrecisionType("fp16") is PrecisionType.FP16
        True
    """

    NO = "no"
    FP8 = "fp8"
    FP16 = "fp16"
    BF16 = "bf16"


class RNGType(BaseEnum):
    """Random number generators that can be synchronized across processes.

    Example:
        >>> RNGType("generator") is RNGType.GENERATOR
        True
    """

    TORCH = "torch"
    CUDA = "cuda"
    MLU = "mlu"
    SDAA = "sdaa"
    MUSA = "musa"
    NPU = "npu"
    XLA = "xla"
    XPU = "xpu"
    HPU = "hpu"
    NEURON = "neuron"
    GENERATOR = "generator"


class SageMakerDistributedType(str, BaseEnum):
    """Distribution modes of Amazon SageMaker.

    Example:
        >>> SageMakerDistributedType.DATA_PARALLEL.value
        'DATA_PARALLEL'
    """

    NO = "NO"
    DATA_PARALLEL = "DATA_PARALLEL"
    MODEL_PARALLEL = "MODEL_PARALLEL"


class CustomDtype(enum.Enum):
    """Dtypes torch lacks, used by quantized loading and size computations.

    Example:
        >>> CustomDtype.INT4.value
        'int4'
    """

    FP8 = "fp8"
    INT4 = "int4"
    INT2 = "int2"
