"""Multi-head attention: projections around a pluggable attention backend.

Covers self- and cross-attention (Vaswani et al. 2017), grouped-query and multi-query
attention (Ainslie et al. 2023, "GQA"; Shazeer 2019), optional rotary embeddings, and
incremental decoding through :class:`~polyformer.core.kv_cache.LayerKVCache`.

Shape legend: B batch, T query tokens, S key/value (source) tokens, D model dim, H query
heads, Hkv key/value heads, Dh head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import create_attention_backend, eager_attention
from .kv_cache import LayerKVCache
from .positional import RotaryEmbedding, apply_rotary

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections.

    Args:
        dim: model width D.
        num_heads: query heads H; must divide D.
        num_kv_heads: key/value heads Hkv (H = MHA, 1 = multi-query, between = GQA); must
            divide H. Default H.
        dropout: dropout on attention weights (training only).
        bias: biases in the projections.
        backend: attention backend spec (``"sdpa"``, ``"eager"``, ``"local:256"``, ...).
        rotary: apply RoPE to q and k (self-attention only).
        rotary_dim: how many channels per head rotate (default all).
        rotary_base: RoPE angle base.
        cross: this layer attends from queries to a separate context (keys/values).
        kv_dim: width of the context for cross-attention (default D).
        max_len: longest key length (used by backends that need it, such as Linformer).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        backend: str = "sdpa",
        rotary: bool = False,
        rotary_dim: int | None = None,
        rotary_base: float = 10000.0,
        cross: bool = False,
        kv_dim: int | None = None,
        max_len: int | None = None,
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads <= 0 or dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must be positive and divide the width dim={dim}")
        if num_kv_heads <= 0 or num_heads % num_kv_heads:
            raise ValueError(f"num_kv_heads={num_kv_heads} must be positive and divide num_heads={num_heads}")
        if rotary and cross:
            raise ValueError("rotary embeddings apply to self-attention only; set rotary=False for cross-attention")
        self.dim, self.num_heads, self.num_kv_heads = dim, num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        self.cross = cross
        self.dropout = dropout
        kv_dim = dim if kv_dim is None else kv_dim
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.backend = create_attention_backend(backend, num_heads=num_heads, head_dim=self.head_dim, max_len=max_len)
        self.rotary = RotaryEmbedding(self.head_dim, rotary_dim, rotary_base) if rotary else None

    def _split(self, x: Tensor, heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, Dh)

    def _project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v projections of x in one matrix product (one read of x, one kernel)."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        kv_width = self.num_kv_heads * self.head_dim
        return F.linear(x, weight, bias).split([self.dim, kv_width, kv_width], dim=-1)

    def _project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        return self._split(self.k_proj(source), self.num_kv_heads), self._split(self.v_proj(source), self.num_kv_heads)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        cache: LayerKVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from x (B, T, D).

        Args:
            x: queries (and, for self-attention, keys and values).
            context: keys/values source (B, S, Dkv) for cross-attention. With a cache whose
                cross keys are filled it may be None.
            mask: boolean (True = may attend) or additive mask broadcastable to (B, H, T, S).
            is_causal: causal self-attention (aligned to the end of the cached keys).
            positions: (B, T) or (T,) positions of x, needed with rotary embeddings.
            cache: this layer's cache; self-attention appends to it, cross-attention fills
                it once and reuses it.
            return_weights: also return the attention weights (computed by the eager path).

        Returns:
            The output (B, T, D) and the weights (B, H, T, S) or None.
        """
        b, t, _ = x.shape
        if self.cross:
            q = self._split(self.q_proj(x), self.num_heads)  # (B, H, T, Dh)
        else:
            q_flat, k_flat, v_flat = self._project_qkv(x)
            q = self._split(q_flat, self.num_heads)  # (B, H, T, Dh)
        if self.cross:
            if cache is not None and cache.cross_k is not None:
                k, v = cache.cross_k, cache.cross_v
            else:
                if context is None:
                    raise ValueError("cross-attention needs a context tensor (B, S, D)")
                k, v = self._project_kv(context)  # (B, Hkv, S, Dh)
                if cache is not None:
                    cache.cross_k, cache.cross_v = k, v
        else:
            k, v = self._split(k_flat, self.num_kv_heads), self._split(v_flat, self.num_kv_heads)  # (B, Hkv, T, Dh)
            if self.rotary is not None:
                if positions is None:
                    positions = torch.arange(t, device=x.device)
                cos, sin = self.rotary(positions)
                q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
            if cache is not None:
                k, v = cache.append(k, v)
        if self.num_kv_heads != self.num_heads:
            repeat = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(repeat, dim=1)  # (B, H, S, Dh)
            v = v.repeat_interleave(repeat, dim=1)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if return_weights:
            out, weights = eager_attention(q, k, v, mask, is_causal, None, dropout_p, return_weights=True)
        else:
            out = self.backend(q, k, v, mask, is_causal, None, dropout_p)
        out = out.transpose(1, 2).reshape(b, t, self.dim)  # (B, T, D)
        return self.out_proj(out), weights
