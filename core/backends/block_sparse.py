"""Fixed block-sparse attention patterns: Sparse Transformer strided and BigBird.

The sequence is cut into blocks of ``block`` tokens and a boolean block layout says which key
blocks each query block attends to:

- ``strided`` (Child et al. 2019, "Generating Long Sequences with Sparse Transformers", the
  strided pattern at block granularity): query block i sees key blocks j with
  |i - j| <= window (local part) or |i - j| a multiple of ``stride`` (strided part);
- ``bigbird`` (Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences", ITC
  variant; reference code github.com/google-research/bigbird): the first ``globals`` blocks
  attend to everything and are attended to by everything, every block sees its neighbours
  within ``window`` blocks, and ``random`` further key blocks drawn once from ``seed``.

Causal attention keeps key blocks j <= i and masks the future inside the diagonal block.
Blocks are numbered by key position (query i sits at key position i + Tk - Tq), so cached
decoding sees the same pattern as a full pass. Only the listed blocks are computed (gathered
per query block, see :func:`.local.gathered_block_attention`); BigBird's global query rows are
computed densely, which costs O(globals * block * n). :func:`block_sparse_mask` returns the
equivalent dense mask, and eager attention with it gives the same output.

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim, bs block length,
N query blocks, M key blocks, K listed key blocks per query block.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention_ops import AttentionBackend, as_4d_mask, eager_attention, register_attention_backend
from .local import QueryBlocks, gathered_block_attention

__all__ = ["BlockSparseAttention", "PATTERNS", "block_layout", "block_sparse_attention", "block_sparse_mask"]

PATTERNS = ("strided", "bigbird")


def block_layout(
    query_blocks: Tensor,
    num_key_blocks: int,
    pattern: str,
    is_causal: bool,
    window: int,
    stride: int,
    globals_: int,
    random: int,
    seed: int,
) -> Tensor:
    """Boolean (N, M) layout: which key blocks each (absolute) query block attends to.

    Args:
        query_blocks: (N,) absolute query-block indices.
        num_key_blocks: M.
        pattern: ``strided`` or ``bigbird``.
        is_causal: keep only key blocks j <= i.
        window: neighbouring blocks on each side (before only, when causal).
        stride: strided pattern period in blocks.
        globals_: BigBird global blocks.
        random: BigBird random key blocks per query block.
        seed: seed of the random blocks.
    """
    i = query_blocks.unsqueeze(1)  # (N, 1)
    j = torch.arange(num_key_blocks, device=i.device).unsqueeze(0)  # (1, M)
    gap = (i - j).abs()
    layout = gap <= window
    if pattern == "strided":
        layout = layout | (gap % stride == 0)
    else:
        layout = layout | (j < globals_) | (i < globals_)
        if random > 0:
            gen = torch.Generator().manual_seed(seed)
            rows = int(query_blocks.max().clamp(min=0)) + 1
            table = torch.rand(rows, random, generator=gen).to(i.device)[query_blocks.clamp(min=0)]  # (N, r)
            span = (query_blocks.clamp(min=0) + 1).unsqueeze(1) if is_causal else num_key_blocks
            picks = (table * span).long().clamp(max=num_key_blocks - 1)
            layout = layout | torch.zeros_like(layout).scatter_(1, picks, True)
    if is_causal:
        layout = layout & (j <= i)
    return layout


def _layout_blocks(layout: Tensor) -> tuple[Tensor, Tensor]:
    """Listed key blocks of each query block, padded: indices (N, K) and validity (N, K)."""
    count = int(layout.sum(dim=1).max()) if layout.numel() else 0
    order = torch.sort((~layout).to(torch.int8), dim=1, stable=True).indices[:, : max(count, 1)]  # listed first
    return order, torch.gather(layout, 1, order)


def _gather_blocks(x: Tensor, order: Tensor, bs: int) -> Tensor:
    """Whole key blocks per query block: (B, H, Tk, Dh), order (N, K) -> (B*H, N, K*bs, Dh)."""
    b, h, tk, dh = x.shape
    blocks = math.ceil(tk / bs)
    x = F.pad(x, (0, 0, 0, blocks * bs - tk)).reshape(b * h, blocks, bs, dh)
    return x[:, order].reshape(b * h, order.shape[0], order.shape[1] * bs, dh)


class _Pattern:
    """The settings of one block-sparse layer, turned into layouts and masks."""

    def __init__(self, pattern: str, block: int, window: int, stride: int, globals_: int, random: int, seed: int):
        self.pattern, self.block, self.window, self.stride = pattern, block, window, stride
        self.globals, self.random, self.seed = globals_, random, seed

    def layout(self, query_blocks: Tensor, num_key_blocks: int, is_causal: bool) -> Tensor:
        return block_layout(
            query_blocks,
            num_key_blocks,
            self.pattern,
            is_causal,
            self.window,
            self.stride,
            self.globals,
            self.random,
            self.seed,
        )

    def global_rows(self, tq: int, tk: int) -> int:
        """How many leading queries sit in BigBird global blocks (they attend densely)."""
        if self.pattern != "bigbird":
            return 0
        return min(max(self.globals * self.block - (tk - tq), 0), tq)


def block_sparse_mask(
    tq: int,
    tk: int,
    pattern: str = "bigbird",
    block: int = 64,
    window: int = 1,
    stride: int = 4,
    globals: int = 1,
    random: int = 2,
    seed: int = 0,
    is_causal: bool = False,
    device: torch.device | None = None,
) -> Tensor:
    """The dense (Tq, Tk) boolean mask equivalent to a block-sparse pattern (arguments as the options)."""
    spec = _Pattern(pattern, block, window, stride, globals, random, seed)
    blocks = QueryBlocks.build(tq, tk, block, torch.device("cpu") if device is None else device)
    layout = spec.layout(
        blocks.first + torch.arange(blocks.count, device=blocks.positions.device), math.ceil(tk / block), is_causal
    )
    positions = blocks.positions.flatten()[blocks.front : blocks.front + tq]  # key-aligned query positions
    keys = torch.arange(tk, device=positions.device)
    mask = layout[torch.div(positions, block, rounding_mode="floor") - blocks.first][
        :, torch.div(keys, block, rounding_mode="floor")
    ]
    mask[: spec.global_rows(tq, tk)] = True
    if is_causal:
        mask = mask & (keys.unsqueeze(0) <= positions.unsqueeze(1))
    return mask  # (Tq, Tk)


def _dense_rows(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, tq: int, is_causal: bool, scale: float, dropout_p: float
) -> Tensor:
    """Full attention of the first r queries (BigBird global rows, out of Tq) over all keys."""
    r, tk = q.shape[-2], k.shape[-2]
    rows_mask = None
    if mask is not None:
        mask = as_4d_mask(mask)
        rows_mask = mask if mask.shape[-2] == 1 else mask[..., :r, :]
    if is_causal:
        allowed = torch.arange(tk, device=q.device).unsqueeze(0) <= (
            torch.arange(r, device=q.device) + tk - tq
        ).unsqueeze(1)
        if rows_mask is None:
            rows_mask = allowed
        elif rows_mask.dtype == torch.bool:
            rows_mask = rows_mask & allowed
        else:
            rows_mask = rows_mask.masked_fill(~allowed, float("-inf"))
    return eager_attention(q, k, v, rows_mask, False, scale, dropout_p)


def _sparse_rows(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: _Pattern,
    mask: Tensor | None,
    is_causal: bool,
    scale: float,
    dropout_p: float,
) -> Tensor:
    """Attention of all queries over their listed key blocks (BigBird global rows give zeros here)."""
    tq, tk, bs = q.shape[-2], k.shape[-2], spec.block
    blocks = QueryBlocks.build(tq, tk, bs, q.device)
    block_ids = blocks.first + torch.arange(blocks.count, device=q.device)
    layout = spec.layout(block_ids, math.ceil(tk / bs), is_causal)
    if spec.pattern == "bigbird":
        layout[block_ids < spec.globals] = False  # computed densely by _dense_rows
    order, listed = _layout_blocks(layout)  # (N, K)
    keys = (order.unsqueeze(-1) * bs + torch.arange(bs, device=q.device)).flatten(1)  # (N, S) key positions
    valid = listed.repeat_interleave(bs, dim=1) & (keys < tk)
    allowed = valid.unsqueeze(1) & blocks.valid.unsqueeze(-1)  # (N, bs, S)
    if is_causal:
        allowed = allowed & (keys.unsqueeze(1) <= blocks.positions.unsqueeze(-1))
    rows = blocks.positions - (tk - tq)
    k_blocks, v_blocks = _gather_blocks(k, order, bs), _gather_blocks(v, order, bs)
    b, h = q.shape[:2]
    out = gathered_block_attention(
        blocks.split(q),
        k_blocks,
        v_blocks,
        allowed,
        mask,
        rows,
        keys.clamp(max=max(tk - 1, 0)),
        (b, h),
        scale,
        dropout_p,
    )
    return blocks.merge(out, b, h, tq)


def block_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: str = "bigbird",
    block: int = 64,
    window: int = 1,
    stride: int = 4,
    globals: int = 1,
    random: int = 2,
    seed: int = 0,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Block-sparse attention of q (B, H, Tq, Dh) over k, v (B, H, Tk, Dh).

    Pattern arguments as in :func:`block_layout`; ``mask`` (boolean or additive, broadcastable
    to (B, H, Tq, Tk)) applies inside the pattern. Returns (B, H, Tq, Dh); rows with nothing to
    attend to are zero.
    """
    spec = _Pattern(pattern, block, window, stride, globals, random, seed)
    tq = q.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    rows = spec.global_rows(tq, k.shape[-2])
    parts = []
    if rows:
        parts.append(_dense_rows(q[:, :, :rows], k, v, mask, tq, is_causal, scale, dropout_p))
    if rows < tq:
        parts.append(_sparse_rows(q, k, v, spec, mask, is_causal, scale, dropout_p)[:, :, rows:])
    return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]


@register_attention_backend("block_sparse")
class BlockSparseAttention(AttentionBackend):
    """Fixed block-sparse attention (:func:`block_sparse_attention`).

    Spec: ``"block_sparse"`` (BigBird, blocks of 64), ``"block_sparse:strided,block=32,stride=8"``,
    ``"block_sparse:pattern=bigbird,window=1,globals=2,random=3,seed=7"``.
    """

    options = {"pattern": str, "block": int, "window": int, "stride": int, "globals": int, "random": int, "seed": int}
    positional_option = "pattern"
    exact = False

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int | None = None, **options: Any):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_len=max_len, **options)
        settings = {"pattern": "bigbird", "block": 64, "window": 1, "stride": 4, "globals": 1, "random": 2, "seed": 0}
        settings.update(options)
        if settings["pattern"] not in PATTERNS:
            raise ValueError(f"block_sparse pattern must be one of {PATTERNS}, got {settings['pattern']!r}")
        for name, low in (("block", 1), ("window", 0), ("stride", 1), ("globals", 0), ("random", 0)):
            if settings[name] < low:
                raise ValueError(f"block_sparse option {name} must be >= {low}, got {settings[name]}")
        self.settings = settings

    def dense_mask(self, tq: int, tk: int, is_causal: bool = False, device: torch.device | None = None) -> Tensor:
        """The equivalent dense (Tq, Tk) boolean mask, see :func:`block_sparse_mask`."""
        return block_sparse_mask(tq, tk, **self.settings, is_causal=is_causal, device=device)

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        return block_sparse_attention(
            q, k, v, **self.settings, mask=mask, is_causal=is_causal, scale=scale, dropout_p=dropout_p
        )
