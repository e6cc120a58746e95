"""Pure-torch weight-only quantized ``Linear`` (int8 per channel, int4 per group).

The backend of ``BnbQuantizationConfig(..., backend="torch")``: no extra package, runs on any
device torch runs on. Weights are stored as integers with float32 scales and dequantized to the
input's dtype in each forward, so memory drops to about 1/4 (int8) or 1/8 (int4) of float32
while the arithmetic stays in floating point (no speed-up; the point is fitting the model).

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(64, 8)
    >>> q = WeightOnlyLinear.from_linear(lin, bits=8)
    >>> q.weight.dtype, q.weight_scale.shape
    (torch.int8, torch.Size([8, 1]))
    >>> x = torch.randn(2, 64)
    >>> bool((q(x) - lin(x)).abs().max() < 0.05)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Columns of the weight sharing one int4 scale (whole rows when ``in_features`` is not a multiple).
INT4_GROUP_SIZE = 64


def _groups(in_features: int, bits: int) -> int:
    if bits == 8 or in_features % INT4_GROUP_SIZE:
        return 1
    return in_features // INT4_GROUP_SIZE


class WeightOnlyLinear(nn.Module):
    """A ``Linear`` whose weight is stored as int8 (``bits=8``) or packed int4 (``bits=4``).

    - ``bits=8``: ``weight`` is int8 ``[out, in]`` with one float32 scale per output row
      (symmetric, ``absmax / 127``).
    - ``bits=4``: ``weight`` is uint8 ``[out, ceil(in / 2)]`` (two signed 4-bit values per byte)
      with one scale per group of :data:`INT4_GROUP_SIZE` input columns (``absmax / 7``).

    ``weight`` and ``weight_scale`` are frozen parameters, so device maps, offload hooks and
    ``model.to`` handle them like any other weight. ``bias`` stays floating point. The layer
    is created empty (zeros; or on the meta device under ``init_empty_weights``) and filled
    with :meth:`set_weight`, which quantizes a float weight on the device it is given.

    Example:
        >>> q = WeightOnlyLinear(128, 4, bits=4)
        >>> q.set_weight(torch.randn(4, 128))
        >>> q.weight.dtype, tuple(q.weight.shape), tuple(q.weight_scale.shape)
        (torch.uint8, (4, 64), (4, 2))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bits: int = 8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits={bits!r} is not supported; valid values: 4, 8")
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        columns = in_features if bits == 8 else (in_features + 1) // 2
        storage = torch.int8 if bits == 8 else torch.uint8
        weight = torch.zeros(out_features, columns, dtype=storage, device=device)
        scale = torch.ones(out_features, _groups(in_features, bits), device=device)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.weight_scale = nn.Parameter(scale, requires_grad=False)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8) -> WeightOnlyLinear:
        """A quantized copy of ``linear`` (on its device; the bias keeps its dtype).

        Example:
            >>> WeightOnlyLinear.from_linear(nn.Linear(4, 2)).weight.dtype
            torch.int8
        """
        weight = linear.weight
        new = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            bits=bits,
            device=weight.device,
            dtype=weight.dtype,
        )
        new.set_weight(weight.detach())
        if linear.bias is not None:
            new.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return new

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor) -> None:
        """Quantize the float ``weight`` (``[out, in]``) into this layer, on ``weight.device``.

        Example:
            >>> q = WeightOnlyLinear(2, 1, bias=False)
            >>> q.set_weight(torch.tensor([[0.5, -1.0]]))
            >>> q.weight.tolist(), q.dequantize().tolist()
            ([[64, -127]], [[0.5039370059967041, -1.0]])
        """
        expected = (self.out_features, self.in_features)
        if tuple(weight.shape) != expected:
            raise ValueError(f"weight has shape {tuple(weight.shape)}; this layer needs {expected}")
        if not weight.is_floating_point():
            raise ValueError(f"weight must be floating point to quantize, got {weight.dtype}")
        w = weight.float()
        levels = 127 if self.bits == 8 else 7
        groups = _groups(self.in_features, self.bits)
        grouped = w.reshape(self.out_features, groups, -1)
        scale = grouped.abs().amax(dim=-1).clamp(min=1e-12) / levels
        q = torch.round(grouped / scale.unsqueeze(-1)).clamp(-levels - 1, levels)
        q = q.reshape(self.out_features, self.in_features).to(torch.int8)
        if self.bits == 4:
            if self.in_features % 2:
                q = F.pad(q, (0, 1))
            nibbles = (q + 8).to(torch.uint8)
            q = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
        self.weight = nn.Parameter(q, requires_grad=False)
        self.weight_scale = nn.Parameter(scale, requires_grad=False)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight as a float ``[out, in]`` tensor of ``dtype``.

        Example:
            >>> WeightOnlyLinear(3, 2).dequantize().shape
            torch.Size([2, 3])
        """
        q = self.weight
        if self.bits == 4:
            low = (q & 0x0F).to(torch.int8) - 8
            high = (q >> 4).to(torch.int8) - 8
            q = torch.stack((low, high), dim=-1).reshape(self.out_features, -1)
            q = q[:, : self.in_features]
        groups = self.weight_scale.shape[-1]
        grouped = q.reshape(self.out_features, groups, -1).to(self.weight_scale.dtype)
        weight = grouped * self.weight_scale.unsqueeze(-1)
        return weight.reshape(self.out_features, self.in_features).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, bits={self.bits}"
        )
