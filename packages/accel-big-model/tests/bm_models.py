"""Small models shared by the checkpoint, hook and dispatch tests."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, d))
        self.register_buffer("shift", torch.full((d,), 0.25), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.ln(x)))) * self.scale + self.shift


class Tiny(nn.Module):
    """Embedding -> blocks -> norm -> head (tied to the embedding by default)."""

    def __init__(self, vocab: int = 32, d: int = 16, n: int = 4, tie: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(n))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


def make_tiny(seed: int = 0, **kwargs) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def empty_tiny(**kwargs) -> Tiny:
    from accel.big_model.init import init_empty_weights

    with init_empty_weights():
        return Tiny(**kwargs).eval()


def ids() -> torch.Tensor:
    return torch.arange(24).reshape(2, 12) % 32
