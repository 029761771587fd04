"""Transformer layers composed from parts: attention, feed-forward and norms are passed in.

Post-norm (Vaswani et al. 2017; BERT) and pre-norm (Xiong et al. 2020, GPT-2, ViT) are two
separate, readable code paths. Optional layer scale (CaiT, Touvron et al. 2021) and
stochastic depth (DropPath) wrap each residual branch.

Shape legend: B batch, T target tokens, S source tokens, D model dim, H heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .feedforward import DropPath
from .kv_cache import LayerKVCache
from .multihead import MultiHeadAttention

__all__ = ["DecoderLayer", "EncoderLayer", "LayerScale"]


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch, initialised small."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class _Residual(nn.Module):
    """dropout -> layer scale -> drop path on one residual branch."""

    def __init__(self, dim: int, dropout: float, drop_path: float, layer_scale: float | None):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.scale = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, branch: Tensor) -> Tensor:
        return self.drop_path(self.scale(self.dropout(branch)))


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, each in a residual branch.

    Args:
        self_attn: a :class:`MultiHeadAttention` (self-attention).
        feed_forward: any (..., D) -> (..., D) module (MLP, gated MLP, MoE).
        norm1: norm around the attention branch.
        norm2: norm around the feed-forward branch.
        dropout: dropout on each branch output.
        drop_path: stochastic depth probability of each branch.
        norm_first: pre-norm (True) or post-norm (False).
        layer_scale: initial layer-scale value, or None for no layer scale.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        feed_forward: nn.Module,
        norm1: nn.Module,
        norm2: nn.Module,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_first: bool = True,
        layer_scale: float | None = None,
    ):
        super().__init__()
        dim = self_attn.dim
        self.self_attn, self.feed_forward = self_attn, feed_forward
        self.norm1, self.norm2 = norm1, norm2
        self.residual1 = _Residual(dim, dropout, drop_path, layer_scale)
        self.residual2 = _Residual(dim, dropout, drop_path, layer_scale)
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        cache: LayerKVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) -> (B, T, D) and the attention weights (B, H, T, T) if asked for."""
        if self.norm_first:
            attn, weights = self.self_attn(self.norm1(x), None, mask, is_causal, positions, cache, return_weights)
            x = x + self.residual1(attn)
            x = x + self.residual2(self.feed_forward(self.norm2(x)))
        else:
            attn, weights = self.self_attn(x, None, mask, is_causal, positions, cache, return_weights)
            x = self.norm1(x + self.residual1(attn))
            x = self.norm2(x + self.residual2(self.feed_forward(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Causal self-attention + cross-attention (optional) + feed-forward.

    With ``cross_attn=None`` this is a decoder-only (GPT-style) block.

    Args:
        self_attn: causal self-attention.
        cross_attn: attention from the target to the encoder output, or None.
        feed_forward: any (..., D) -> (..., D) module.
        norms: one norm per branch (2 without cross-attention, 3 with).
        dropout: dropout on each branch output.
        drop_path: stochastic depth probability of each branch.
        norm_first: pre-norm (True) or post-norm (False).
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        cross_attn: MultiHeadAttention | None,
        feed_forward: nn.Module,
        norms: list[nn.Module],
        dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_first: bool = True,
    ):
        super().__init__()
        expected = 3 if cross_attn is not None else 2
        if len(norms) != expected:
            raise ValueError(f"DecoderLayer needs {expected} norms, got {len(norms)}")
        dim = self_attn.dim
        self.self_attn, self.cross_attn, self.feed_forward = self_attn, cross_attn, feed_forward
        self.norms = nn.ModuleList(norms)
        self.residuals = nn.ModuleList(_Residual(dim, dropout, drop_path, None) for _ in norms)
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache: LayerKVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x (B, T, D) over memory (B, S, D) -> (B, T, D), self weights, cross weights."""
        branches = [lambda h: self.self_attn(h, None, self_mask, True, positions, cache, return_weights)]
        if self.cross_attn is not None:
            branches.append(lambda h: self.cross_attn(h, memory, memory_mask, False, None, cache, return_weights))
        weights: list[Tensor | None] = []
        for branch, norm, residual in zip(branches, self.norms, self.residuals):
            if self.norm_first:
                out, w = branch(norm(x))
                x = x + residual(out)
            else:
                out, w = branch(x)
                x = norm(x + residual(out))
            weights.append(w)
        if self.norm_first:
            x = x + self.residuals[-1](self.feed_forward(self.norms[-1](x)))
        else:
            x = self.norms[-1](x + self.residuals[-1](self.feed_forward(x)))
        cross_weights = weights[1] if len(weights) > 1 else None
        return x, weights[0], cross_weights
