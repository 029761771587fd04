"""Sliding-window (local) attention computed block by block, in time and memory ~ n * w.

Each query attends only to keys within a window of width w around its own position
(Beltagy et al. 2020, "Longformer: The Long-Document Transformer", sliding window; Child et
al. 2019 and Jiang et al. 2023, "Mistral 7B", for the causal form). Queries are grouped into
blocks; every query block gathers the one contiguous slab of keys its window can reach and
attends to it with a band mask, so there is no n x n score matrix (compare the "sliding
chunks" of github.com/allenai/longformer).

Window convention (key positions are aligned to queries at the end, as for ``is_causal``, so
query i sits at key position p = i + Tk - Tq):

- causal (``is_causal=True``): keys j with p - w < j <= p (the w most recent keys, itself
  included);
- two-sided (``is_causal=False``): keys j with |p - j| < w (w - 1 on each side, plus itself).

With w >= max(Tq, Tk) both equal full attention. This module also holds the block-gather
machinery shared with :mod:`.block_sparse`.

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim, bs query-block
length, N query blocks, S keys gathered per query block (keys are read through an
overlapping strided view, not copied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention_ops import AttentionBackend, as_4d_mask, register_attention_backend

__all__ = ["LocalAttention", "QueryBlocks", "gathered_block_attention", "local_attention", "local_mask"]


@dataclass
class QueryBlocks:
    """Queries grouped into blocks of ``size`` by their key-aligned position.

    Attributes:
        size: block length bs.
        first: absolute index of the first block (position // bs of query 0).
        count: number of blocks N.
        front: padding rows before query 0 in the first block.
        positions: (N, bs) key-aligned position of every (padded) row.
        valid: (N, bs) False on padding rows.
    """

    size: int
    first: int
    count: int
    front: int
    positions: Tensor
    valid: Tensor

    @classmethod
    def build(cls, tq: int, tk: int, size: int, device: torch.device) -> QueryBlocks:
        offset = tk - tq
        first = offset // size
        front = offset - first * size
        count = max(1, math.ceil((front + tq) / size))
        positions = (first * size + torch.arange(count * size, device=device)).view(count, size)
        rows = positions - offset
        return cls(size, first, count, front, positions, (rows >= 0) & (rows < tq))

    def split(self, x: Tensor) -> Tensor:
        """(B, H, Tq, Dh) -> (B*H, N, bs, Dh), zero-padded."""
        back = self.count * self.size - self.front - x.shape[-2]
        x = F.pad(x, (0, 0, self.front, back))
        return x.reshape(x.shape[0] * x.shape[1], self.count, self.size, x.shape[-1])

    def merge(self, x: Tensor, batch: int, heads: int, tq: int) -> Tensor:
        """(B*H, N, bs, Dh) -> (B, H, Tq, Dh), dropping the padding rows."""
        x = x.reshape(batch, heads, self.count * self.size, x.shape[-1])
        return x[:, :, self.front : self.front + tq]


def _gather_mask(mask: Tensor, rows: Tensor, key_index: Tensor) -> Tensor:
    """Pick a (mb, mh, mq, mk) mask at query rows (N, bs) and keys (N, S) -> (mb, mh, N, bs|1, S|1)."""
    mask = as_4d_mask(mask)
    mq, mk = mask.shape[-2], mask.shape[-1]
    rows = rows.clamp(0, mq - 1) if mq > 1 else torch.zeros_like(rows)
    if mq == 1 and mk == 1:
        return mask.unsqueeze(-1)  # (mb, mh, 1, 1, 1)
    if mk == 1:
        return mask[:, :, rows, 0].unsqueeze(-1)  # (mb, mh, N, bs, 1)
    if mq == 1:
        return mask[:, :, 0, key_index].unsqueeze(-2)  # (mb, mh, N, 1, S)
    return mask[:, :, rows.unsqueeze(-1), key_index.unsqueeze(-2)]  # (mb, mh, N, bs, S)


def gathered_block_attention(
    q_blocks: Tensor,
    k_blocks: Tensor,
    v_blocks: Tensor,
    allowed: Tensor,
    mask: Tensor | None,
    rows: Tensor,
    key_index: Tensor,
    batch_heads: tuple[int, int],
    scale: float,
    dropout_p: float,
) -> Tensor:
    """Attention of each query block over its own gathered keys.

    The gathered problem is an ordinary batched attention with a mask, so it runs through
    torch's fused ``scaled_dot_product_attention`` (4-D inputs and a 4-D mask keep it on the
    fused CPU kernel); rows with nothing allowed are zeroed.

    Args:
        q_blocks: queries (B*H, N, bs, Dh).
        k_blocks: keys of each block (B*H, N, S, Dh); any strides with a unit last stride.
        v_blocks: values of each block (B*H, N, S, Dh).
        allowed: (N, bs, S) boolean pattern, False on unused slots and padding rows.
        mask: the user's mask broadcastable to (B, H, Tq, Tk), or None.
        rows: (N, bs) query index of every block row (into Tq).
        key_index: (N, S) key index of every slot (any valid index on unused slots).
        batch_heads: (B, H).
        scale: score scale.
        dropout_p: dropout on the attention weights.

    Returns:
        (B*H, N, bs, Dh); rows with nothing allowed are zero.
    """
    (b, h), (n, bs, s) = batch_heads, allowed.shape
    full = allowed
    if mask is not None:
        picked = _gather_mask(mask, rows, key_index)  # (mb, mh, N, bs|1, S|1)
        if picked.dtype == torch.bool:
            full = picked & allowed
        else:
            full = torch.where(allowed, picked.to(q_blocks.dtype), float("-inf"))
    if full.dtype == torch.bool:
        empty = ~full.any(dim=-1, keepdim=True)
        full = full | empty  # attend anywhere, zeroed below
    else:
        empty = torch.isneginf(full.amax(dim=-1, keepdim=True))
        full = full.masked_fill(empty, 0.0)
    full = full.expand(b, h, n, bs, s).reshape(b * h, n, bs, s) if full.dim() == 5 else full.unsqueeze(0)
    empty = empty.expand(b, h, n, bs, 1).reshape(b * h, n, bs, 1) if empty.dim() == 5 else empty.unsqueeze(0)
    out = F.scaled_dot_product_attention(q_blocks, k_blocks, v_blocks, attn_mask=full, dropout_p=dropout_p, scale=scale)
    return out.masked_fill(empty, 0.0) if bool(empty.any()) else out  # (B*H, N, bs, Dh)


def _window_view(x: Tensor, blocks: QueryBlocks, behind: int, span: int) -> Tensor:
    """Overlapping (B*H, N, S, Dh) view of each query block's key slab; no copy beyond zero padding."""
    b, h, tk, dh = x.shape
    start = blocks.first * blocks.size - behind  # key position of the first slab's first slot
    front = max(0, -start)
    back = max(0, start + (blocks.count - 1) * blocks.size + span - tk)
    padded = F.pad(x, (0, 0, front, back)).reshape(b * h, front + tk + back, dh).contiguous()
    size = (b * h, blocks.count, span, dh)
    stride = (padded.shape[1] * dh, blocks.size * dh, dh, 1)
    return padded.as_strided(size, stride, padded.storage_offset() + (start + front) * dh)


def _window_keys(blocks: QueryBlocks, tk: int, window: int, causal: bool) -> tuple[Tensor, Tensor]:
    """Key slab of each query block and the band pattern: (N, S) indices and (N, bs, S) allowed.

    The band depends only on the offset inside the block, so it is built once as (bs, S).
    """
    behind, ahead = window - 1, 0 if causal else window - 1
    span = blocks.size + behind + ahead
    device = blocks.positions.device
    starts = (blocks.first + torch.arange(blocks.count, device=device)) * blocks.size - behind
    keys = starts.unsqueeze(1) + torch.arange(span, device=device)  # (N, S) key positions
    gap = (
        torch.arange(span, device=device).unsqueeze(0) - behind - torch.arange(blocks.size, device=device).unsqueeze(1)
    )
    band = (gap >= -behind) & (gap <= ahead)  # (bs, S)
    in_range = (keys >= 0) & (keys < tk)  # (N, S)
    allowed = band.unsqueeze(0) & in_range.unsqueeze(1) & blocks.valid.unsqueeze(-1)
    return keys.clamp(0, max(tk - 1, 0)), allowed


def local_mask(tq: int, tk: int, window: int, is_causal: bool, device: torch.device | None = None) -> Tensor:
    """The dense (Tq, Tk) boolean mask that sliding-window attention applies."""
    gap = torch.arange(tk, device=device).unsqueeze(0) - (torch.arange(tq, device=device) + tk - tq).unsqueeze(1)
    upper = 0 if is_causal else window - 1
    return (gap > -window) & (gap <= upper)


def local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    block: int | None = None,
) -> Tensor:
    """Sliding-window attention of q (B, H, Tq, Dh) over k, v (B, H, Tk, Dh).

    Args:
        q: queries.
        k: keys.
        v: values.
        window: window width w (see the module docstring).
        mask: boolean or additive mask broadcastable to (B, H, Tq, Tk), applied inside the window.
        is_causal: causal window (only earlier keys) instead of a two-sided one.
        scale: score scale; default 1/sqrt(Dh).
        dropout_p: dropout on the attention weights.
        block: query-block length; default min(w, 128).

    Returns:
        (B, H, Tq, Dh); rows with nothing to attend to are zero.
    """
    (b, h, tq, _), tk = q.shape, k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    window = min(window, max(tq, tk))  # a wider window sees the same keys
    size = min(block or min(window, 128), max(tq, 1))
    blocks = QueryBlocks.build(tq, tk, size, q.device)
    key_index, allowed = _window_keys(blocks, tk, window, is_causal)
    behind, span = window - 1, key_index.shape[1]
    k_blocks, v_blocks = _window_view(k, blocks, behind, span), _window_view(v, blocks, behind, span)
    rows = blocks.positions - (tk - tq)
    out = gathered_block_attention(
        blocks.split(q), k_blocks, v_blocks, allowed, mask, rows, key_index, (b, h), scale, dropout_p
    )
    return blocks.merge(out, b, h, tq)


@register_attention_backend("local")
class LocalAttention(AttentionBackend):
    """Sliding-window attention (:func:`local_attention`); causal or two-sided from ``is_causal``.

    Spec: ``"local:256"`` (window 256) or ``"local:window=256,block=64"``.
    """

    options = {"window": int, "block": int}
    positional_option = "window"
    exact = False

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int | None = None, **options: Any):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_len=max_len, **options)
        self.window = int(options.get("window", 256))
        self.block = options.get("block")
        if self.window < 1:
            raise ValueError(f"local attention needs a window w >= 1, got {self.window} (e.g. 'local:256')")
        if self.block is not None and self.block < 1:
            raise ValueError(f"local attention needs block >= 1, got {self.block}")

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        return local_attention(q, k, v, self.window, mask, is_causal, scale, dropout_p, self.block)
