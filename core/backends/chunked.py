"""Exact attention over key blocks with an online softmax and a recomputing backward.

The forward pass walks over blocks of queries and, inside each, over blocks of keys, keeping
a running row maximum, a running normaliser and a running weighted sum of values (the online
softmax of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"; Rabe &
Staats 2021, "Self-attention Does Not Need O(n^2) Memory"). Only the output and one
log-sum-exp per query are kept for backward, which recomputes the score blocks instead of
storing the full score matrix (Dao et al. 2022, "FlashAttention", Algorithm 2; reference code
github.com/Dao-AILab/flash-attention). Memory therefore grows linearly with sequence length
while the result equals ``eager`` attention to float rounding, with masks, causality and
dropout.

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim,
bq query-block length, bk key-block length.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from ..attention_ops import AttentionBackend, as_4d_mask, register_attention_backend

__all__ = ["ChunkedAttention", "chunked_attention"]


def _slice(mask: Tensor, dim: int, start: int, stop: int) -> Tensor:
    """Slice ``mask`` along ``dim`` unless that dimension is broadcast (size 1)."""
    return mask if mask.shape[dim] == 1 else mask.narrow(dim, start, stop - start)


class _Blocks:
    """The block walk shared by forward and backward: slicing, masking and dropout draws."""

    def __init__(
        self, q: Tensor, k: Tensor, q_block: int, k_block: int, mask: Tensor | None, is_causal: bool, scale: float
    ):
        self.tq, self.tk, self.mask, self.is_causal, self.scale = q.shape[-2], k.shape[-2], mask, is_causal, scale
        # Softmax statistics and accumulators in float32 (float64 for float64 inputs).
        self.dtype = torch.promote_types(q.dtype, torch.float32)
        self.offset = self.tk - self.tq  # query i is aligned with key i + offset
        self.q_starts = list(range(0, self.tq, q_block))
        self.q_block, self.k_block = q_block, k_block

    def key_blocks(self, qs: int, qe: int) -> list[tuple[int, int]]:
        """Key blocks [ks, ke) that query rows [qs, qe) may see (causality skips later ones)."""
        last = self.tk if not self.is_causal else min(self.tk, qe + self.offset)
        return [(ks, min(ks + self.k_block, self.tk)) for ks in range(0, max(last, 0), self.k_block)]

    def scores(self, q_scaled: Tensor, k: Tensor, qs: int, qe: int, ks: int, ke: int) -> Tensor:
        """Masked float32 scores (B, H, bq, bk) of one block pair, from queries already multiplied by the scale."""
        s = torch.matmul(q_scaled, k.transpose(-2, -1)).to(self.dtype)  # (B, H, bq, bk)
        if self.mask is not None:
            m = _slice(_slice(self.mask, 2, qs, qe), 3, ks, ke)
            s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m.to(self.dtype)
        if self.is_causal and ke - 1 > qs + self.offset:
            rows = torch.arange(qs, qe, device=s.device).unsqueeze(1) + self.offset
            cols = torch.arange(ks, ke, device=s.device).unsqueeze(0)
            s = s.masked_fill(cols > rows, float("-inf"))
        return s

    def keep(self, seed: int, qs: int, ks: int, shape: torch.Size, p: float, device: torch.device) -> Tensor:
        """The dropout keep-mask of one block, scaled by 1/(1-p); identical on every call."""
        gen = torch.Generator(device=device)
        gen.manual_seed(seed + qs * (self.tk + 1) + ks)
        return (torch.rand(shape, generator=gen, device=device) >= p).to(self.dtype) / (1.0 - p)


def _forward(q: Tensor, k: Tensor, v: Tensor, walk: _Blocks, dropout_p: float, seed: int) -> tuple[Tensor, Tensor]:
    """Output (B, H, Tq, Dh) and per-row log-sum-exp (B, H, Tq; +inf for empty rows)."""
    b, h, tq, dh = q.shape
    out = q.new_empty(b, h, tq, v.shape[-1])
    lse = torch.empty(b, h, tq, device=q.device, dtype=walk.dtype)
    for qs in walk.q_starts:
        qe = min(qs + walk.q_block, tq)
        q_blk = q[:, :, qs:qe] * walk.scale  # (B, H, bq, Dh), scaled once instead of every score block
        row_max = torch.full((b, h, qe - qs), float("-inf"), device=q.device, dtype=walk.dtype)
        row_sum = torch.zeros(b, h, qe - qs, device=q.device, dtype=walk.dtype)
        acc = torch.zeros(b, h, qe - qs, v.shape[-1], device=q.device, dtype=walk.dtype)
        for ks, ke in walk.key_blocks(qs, qe):
            s = walk.scores(q_blk, k[:, :, ks:ke], qs, qe, ks, ke)  # (B, H, bq, bk)
            new_max = torch.maximum(row_max, s.amax(dim=-1))
            safe_max = torch.where(torch.isneginf(new_max), 0.0, new_max)
            p = s.sub_(safe_max.unsqueeze(-1)).exp_()  # in place: s is a fresh block
            alpha = torch.exp(row_max - safe_max)
            row_sum = row_sum * alpha + p.sum(dim=-1)
            if dropout_p > 0.0:
                p = p * walk.keep(seed, qs, ks, p.shape, dropout_p, q.device)
            acc = acc.mul_(alpha.unsqueeze(-1)).add_(torch.matmul(p, v[:, :, ks:ke].to(walk.dtype)))
            row_max = new_max
        empty = row_sum == 0
        safe_max = torch.where(torch.isneginf(row_max), 0.0, row_max)
        out[:, :, qs:qe] = (acc / torch.where(empty, 1.0, row_sum).unsqueeze(-1)).to(out.dtype)
        lse[:, :, qs:qe] = torch.where(empty, float("inf"), safe_max + torch.log(row_sum))
    return out, lse


def _reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a (B, H, bq, bk) gradient over the dimensions a broadcast mask block has as 1."""
    dims = [i for i, (g, m) in enumerate(zip(grad.shape, shape)) if m == 1 and g != 1]
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def _backward(saved: tuple[Tensor, ...], grad_out: Tensor, walk: _Blocks, dropout_p: float, seed: int, mask_grad: bool):
    """Gradients of q, k, v (and of a float mask) recomputing each score block."""
    q, k, v, out, lse = saved
    work = walk.dtype
    q, k, v, grad_out = q.to(work), k.to(work), v.to(work), grad_out.to(work)
    delta = (grad_out * out.to(work)).sum(dim=-1)  # (B, H, Tq): rowsum(dO * O)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dmask = torch.zeros_like(walk.mask, dtype=work) if mask_grad else None
    for qs in walk.q_starts:
        qe = min(qs + walk.q_block, walk.tq)
        q_blk, do_blk = q[:, :, qs:qe] * walk.scale, grad_out[:, :, qs:qe]
        lse_blk, delta_blk = lse[:, :, qs:qe].unsqueeze(-1), delta[:, :, qs:qe].unsqueeze(-1)
        for ks, ke in walk.key_blocks(qs, qe):
            k_blk, v_blk = k[:, :, ks:ke], v[:, :, ks:ke]
            p = walk.scores(q_blk, k_blk, qs, qe, ks, ke).sub_(lse_blk).exp_()  # (B, H, bq, bk)
            dp = torch.matmul(do_blk, v_blk.transpose(-2, -1))
            if dropout_p > 0.0:
                keep = walk.keep(seed, qs, ks, p.shape, dropout_p, q.device)
                dv[:, :, ks:ke] += torch.matmul((p * keep).transpose(-2, -1), do_blk)
                dp = dp * keep
            else:
                dv[:, :, ks:ke] += torch.matmul(p.transpose(-2, -1), do_blk)
            ds = p * (dp - delta_blk)  # gradient of the (masked) scores
            dq[:, :, qs:qe] += torch.matmul(ds, k_blk) * walk.scale
            dk[:, :, ks:ke] += torch.matmul(ds.transpose(-2, -1), q_blk)  # q_blk carries the scale
            if dmask is not None:
                target = _slice(_slice(dmask, 2, qs, qe), 3, ks, ke)
                target += _reduce_to(ds, target.shape)
    return dq, dk, dv, dmask


class _ChunkedAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, the output and the log-sum-exp only."""

    @staticmethod
    def forward(ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *settings: Any) -> Tensor:
        is_causal, scale, dropout_p, q_block, k_block, mask_shape = settings
        seed = int(torch.randint(0, 2**62, (1,)).item()) if dropout_p > 0.0 else 0
        walk = _Blocks(q, k, q_block, k_block, mask, is_causal, scale)
        out, lse = _forward(q, k, v, walk, dropout_p, seed)
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.settings = (is_causal, scale, dropout_p, q_block, k_block, seed, mask_shape)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor):
        q, k, v, out, lse, mask = ctx.saved_tensors
        is_causal, scale, dropout_p, q_block, k_block, seed, mask_shape = ctx.settings
        walk = _Blocks(q, k, q_block, k_block, mask, is_causal, scale)
        mask_grad = mask is not None and ctx.needs_input_grad[3]
        dq, dk, dv, dmask = _backward((q, k, v, out, lse), grad_out.contiguous(), walk, dropout_p, seed, mask_grad)
        if dmask is not None:
            dmask = dmask.reshape(mask_shape).to(mask.dtype)
        dq, dk, dv = dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)
        return dq, dk, dv, dmask, None, None, None, None, None, None


def chunked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    block: int = 512,
    query_block: int = 512,
) -> Tensor:
    """Exact attention of q (B, H, Tq, Dh) over k, v (B, H, Tk, Dh) in memory linear in T.

    Args:
        q: queries.
        k: keys.
        v: values.
        mask: boolean (True = may attend) or additive float mask broadcastable to
            (B, H, Tq, Tk); a float mask that requires grad receives its gradient.
        is_causal: query i sees keys j <= i + Tk - Tq.
        scale: score scale; default 1/sqrt(Dh).
        dropout_p: dropout on the attention weights (recomputed identically in backward).
        block: key-block length bk.
        query_block: query-block length bq.

    Returns:
        The attended values (B, H, Tq, Dh); rows with no key to attend to are zero.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    full = as_4d_mask(mask)
    mask_shape = mask.shape if mask is not None else None
    return _ChunkedAttentionFunction.apply(q, k, v, full, is_causal, scale, dropout_p, query_block, block, mask_shape)


@register_attention_backend("chunked")
class ChunkedAttention(AttentionBackend):
    """Exact block-wise attention with linear memory (:func:`chunked_attention`).

    Spec: ``"chunked"`` or ``"chunked:512"`` / ``"chunked:block=512,query_block=256"``.
    """

    options = {"block": int, "query_block": int}
    positional_option = "block"

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int | None = None, **options: Any):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_len=max_len, **options)
        self.block = int(options.get("block", 512))
        self.query_block = int(options.get("query_block", self.block))
        if self.block < 1 or self.query_block < 1:
            raise ValueError(
                f"chunked attention needs block >= 1 and query_block >= 1, got {self.block} and {self.query_block}"
            )

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        return chunked_attention(q, k, v, mask, is_causal, scale, dropout_p, self.block, self.query_block)
