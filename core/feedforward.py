"""Position-wise feed-forward layers, norms and stochastic depth.

References: the two-layer MLP (Vaswani et al. 2017); gated variants SwiGLU / GEGLU
(Shazeer 2020, "GLU Variants Improve Transformer"); RMSNorm (Zhang & Sennrich 2019);
stochastic depth / DropPath (Huang et al. 2016; timm ``DropPath``).

Every feed-forward maps (..., D) -> (..., D), so they are drop-in for one another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DropPath", "GatedMLP", "MLP", "RMSNorm", "build_feed_forward", "build_norm", "ACTIVATIONS"]

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}
GATED = {"swiglu": "silu", "geglu": "gelu"}


class MLP(nn.Module):
    """Linear -> activation -> dropout -> Linear.

    Args:
        dim: model width D.
        hidden_dim: inner width (4*D in most papers).
        activation: one of ``gelu``, ``gelu_tanh``, ``relu``, ``silu``.
        dropout: dropout after the activation.
        bias: use biases in both projections.
    """

    def __init__(self, dim: int, hidden_dim: int, activation: str = "gelu", dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(ACTIVATIONS[self.activation](self.fc1(x))))


class GatedMLP(nn.Module):
    """Gated linear unit feed-forward: (act(x W_gate) * x W_up) W_down.

    Args:
        dim: model width D.
        hidden_dim: inner width (8/3*D keeps the parameter count of a 4*D MLP).
        activation: ``swiglu`` (SiLU gate) or ``geglu`` (GELU gate).
        dropout: dropout before the output projection.
        bias: use biases in the projections (off in Llama-style models).
    """

    def __init__(self, dim: int, hidden_dim: int, activation: str = "swiglu", dropout: float = 0.0, bias: bool = False):
        super().__init__()
        if activation not in GATED:
            raise ValueError(f"unknown gated activation {activation!r}; choose one of {sorted(GATED)}")
        self.activation = activation
        self.gate = nn.Linear(dim, hidden_dim, bias=bias)
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate = ACTIVATIONS[GATED[self.activation]](self.gate(x))
        return self.down(self.dropout(gate * self.up(x)))


def build_feed_forward(
    dim: int, hidden_dim: int, activation: str, dropout: float = 0.0, bias: bool = True
) -> nn.Module:
    """An :class:`MLP` or, for ``swiglu``/``geglu``, a :class:`GatedMLP`."""
    if activation in GATED:
        return GatedMLP(dim, hidden_dim, activation, dropout, bias)
    return MLP(dim, hidden_dim, activation, dropout, bias)


class RMSNorm(nn.Module):
    """Root-mean-square norm: x / rms(x) * weight, no centring and no bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def build_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """``layernorm`` -> :class:`torch.nn.LayerNorm`, ``rmsnorm`` -> :class:`RMSNorm`."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose 'layernorm' or 'rmsnorm'")


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample during training.

    Args:
        p: probability of dropping the branch; kept branches are scaled by 1/(1-p).
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
