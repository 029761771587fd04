"""Transformer layers composed from parts: attention, feed-forward and norms are passed in.

Post-norm (Vaswani et al. 2017; BERT) and pre-norm (Xiong et al. 2020, GPT-2, ViT) are two
separate, readable code paths. Optional layer scale (CaiT, Touvron et al. 2021) and
stochastic depth (DropPath) wrap each residual branch. Position terms (``pos``) are added to
queries and keys only, as DETR does.

Shape legend: B batch, T target tokens, S source tokens, D model dim, H heads, n output tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .feedforward import DropPath
from .kv_cache import LayerKVCache
from .multihead import MultiHeadAttention

__all__ = ["DecoderLayer", "EncoderLayer", "LayerScale", "Residual"]


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch, initialised small."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Residual(nn.Module):
    """dropout -> layer scale -> drop path on one residual branch's output."""

    def __init__(self, dim: int, dropout: float = 0.0, drop_path: float = 0.0, layer_scale: float | None = None):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.scale = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, branch: Tensor) -> Tensor:
        return self.drop_path(self.scale(self.dropout(branch)))


def _first_rows(x: Tensor | None, n: int | None) -> Tensor | None:
    """The first n tokens of (B, T, D) tokens or (B, T) / (T,) positions; x itself when n is None."""
    if x is None or n is None:
        return x
    return x[..., :n, :] if x.dim() == 3 else x[..., :n]


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, each in a residual branch.

    Args:
        self_attn: a :class:`MultiHeadAttention` (self-attention).
        feed_forward: any (..., D) -> (..., D) module (MLP, gated MLP, MoE).
        self_attn_norm: norm of the attention branch.
        ffn_norm: norm of the feed-forward branch.
        dropout: dropout on each branch output.
        drop_path: stochastic depth probability of each branch.
        norm_first: pre-norm (True) or post-norm (False).
        layer_scale: initial layer-scale value, or None for no layer scale.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        feed_forward: nn.Module,
        self_attn_norm: nn.Module,
        ffn_norm: nn.Module,
        *,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_first: bool = True,
        layer_scale: float | None = None,
    ):
        super().__init__()
        dim = self_attn.dim
        self.self_attn, self.feed_forward = self_attn, feed_forward
        self.self_attn_norm, self.ffn_norm = self_attn_norm, ffn_norm
        self.self_attn_residual = Residual(dim, dropout, drop_path, layer_scale)
        self.ffn_residual = Residual(dim, dropout, drop_path, layer_scale)
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        pos: Tensor | None = None,
        return_weights: bool = False,
        first_tokens: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) -> (B, T, D) and the attention weights (B, H, T, T) if asked for.

        Args:
            x: the tokens.
            mask: boolean (True = may attend) or additive attention mask.
            is_causal: causal self-attention.
            positions: token positions for rotary attention.
            pos: position terms added to queries and keys (DETR), (B, T, D).
            return_weights: also return the attention weights.
            first_tokens: compute the output of the first n tokens only (B, n, D); their
                keys and values still cover every token (ViT's class token in the last layer).
                Needs an exact backend and no causal mask.
        """
        n = first_tokens
        if n is not None and (is_causal or not self.self_attn.backend.exact):
            raise ValueError("first_tokens needs an exact attention backend and non-causal attention")
        query_mask = mask if n is None or mask is None or mask.dim() < 2 or mask.shape[-2] == 1 else mask[..., :n, :]
        attn_args = dict(mask=query_mask, is_causal=is_causal, return_weights=return_weights)
        if n is not None:
            positions = torch.arange(x.shape[1], device=x.device) if positions is None else positions
            attn_args.update(key_positions=positions, key_pos=pos)
        attn_args.update(positions=_first_rows(positions, n), query_pos=_first_rows(pos, n))
        if self.norm_first:
            h = self.self_attn_norm(x)
            attn, weights = self.self_attn(_first_rows(h, n), None if n is None else h, **attn_args)
            x = _first_rows(x, n) + self.self_attn_residual(attn)
            x = x + self.ffn_residual(self.feed_forward(self.ffn_norm(x)))
        else:
            attn, weights = self.self_attn(_first_rows(x, n), None if n is None else x, **attn_args)
            x = self.self_attn_norm(_first_rows(x, n) + self.self_attn_residual(attn))
            x = self.ffn_norm(x + self.ffn_residual(self.feed_forward(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Self-attention (causal or not) + cross-attention (optional) + feed-forward.

    With ``cross_attn=None`` this is a decoder-only (GPT-style) block; with ``causal=False`` the
    self-attention sees every target token (DETR's decoder over object queries).

    Args:
        self_attn: self-attention over the targets.
        feed_forward: any (..., D) -> (..., D) module.
        self_attn_norm: norm of the self-attention branch.
        ffn_norm: norm of the feed-forward branch.
        cross_attn: attention from the targets to the encoder output, or None.
        cross_attn_norm: norm of the cross-attention branch (needed with ``cross_attn``).
        dropout: dropout on each branch output.
        drop_path: stochastic depth probability of each branch.
        norm_first: pre-norm (True) or post-norm (False).
        layer_scale: initial layer-scale value, or None.
        causal: causal self-attention.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        feed_forward: nn.Module,
        self_attn_norm: nn.Module,
        ffn_norm: nn.Module,
        *,
        cross_attn: MultiHeadAttention | None = None,
        cross_attn_norm: nn.Module | None = None,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_first: bool = True,
        layer_scale: float | None = None,
        causal: bool = True,
    ):
        super().__init__()
        if (cross_attn is None) != (cross_attn_norm is None):
            raise ValueError("DecoderLayer needs cross_attn and cross_attn_norm together (or neither)")
        dim = self_attn.dim
        self.self_attn, self.cross_attn, self.feed_forward = self_attn, cross_attn, feed_forward
        self.self_attn_norm, self.cross_attn_norm, self.ffn_norm = self_attn_norm, cross_attn_norm, ffn_norm
        self.self_attn_residual = Residual(dim, dropout, drop_path, layer_scale)
        self.cross_attn_residual = Residual(dim, dropout, drop_path, layer_scale) if cross_attn is not None else None
        self.ffn_residual = Residual(dim, dropout, drop_path, layer_scale)
        self.norm_first, self.causal = norm_first, causal

    def _branch(self, x: Tensor, norm: nn.Module, residual: Residual, attend) -> tuple[Tensor, Tensor | None]:
        if self.norm_first:
            out, weights = attend(norm(x))
            return x + residual(out), weights
        out, weights = attend(x)
        return norm(x + residual(out)), weights

    def forward(
        self,
        x: Tensor,
        *,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        positions: Tensor | None = None,
        pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
        cache: LayerKVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x (B, T, D) over memory (B, S, D) -> (B, T, D), self weights, cross weights.

        Args:
            x: the targets (tokens or object queries).
            memory: the encoder output, for cross-attention.
            self_mask: mask of the self-attention (key padding, ALiBi bias).
            memory_mask: mask of the cross-attention (source padding).
            positions: target positions for rotary attention.
            pos: position terms of the targets, added to their queries and keys (DETR).
            memory_pos: position terms of the memory, added to its keys (DETR).
            cache: this layer's cache for incremental decoding.
            return_weights: also return the attention weights.
        """

        def self_attend(h: Tensor):
            return self.self_attn(
                h, query_pos=pos, mask=self_mask, is_causal=self.causal, positions=positions,
                cache=cache, return_weights=return_weights,
            )  # fmt: skip

        def cross_attend(h: Tensor):
            return self.cross_attn(
                h,
                memory,
                query_pos=pos,
                key_pos=memory_pos,
                mask=memory_mask,
                cache=cache,
                return_weights=return_weights,
            )

        x, self_weights = self._branch(x, self.self_attn_norm, self.self_attn_residual, self_attend)
        cross_weights = None
        if self.cross_attn is not None:
            x, cross_weights = self._branch(x, self.cross_attn_norm, self.cross_attn_residual, cross_attend)
        if self.norm_first:
            x = x + self.ffn_residual(self.feed_forward(self.ffn_norm(x)))
        else:
            x = self.ffn_norm(x + self.ffn_residual(self.feed_forward(x)))
        return x, self_weights, cross_weights
