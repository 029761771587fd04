"""The ``sdpa`` backend: torch's fused ``scaled_dot_product_attention``, with NaN-free masked rows.

torch picks a fused kernel (flash or memory-efficient on GPUs, a flash kernel on CPUs). The
backend adds what the fused call lacks: causal masks aligned to the end of the keys (cached
decoding), and zeros instead of NaN for query rows that may attend nowhere.

Dispatch policy. On a CPU in bfloat16 the fused kernel is slower than plain matmul + softmax +
matmul while the score matrix is small, so :class:`SDPADispatchPolicy` sends those calls to
:func:`~polyformer.core.attention_ops.eager_attention`, which computes the same attention. The
policy checks three things: the device is a CPU and the dtype bfloat16; the key length is at
most ``max_keys`` (``max_keys_grad`` when q, k or v needs a gradient, because eager's backward
keeps a float32 softmax), or, without gradients, there are at most ``max_queries_any_keys``
queries (a decoding step over a long memory); and the (B, H, Tq, Tk) score matrix has at most
``max_scores`` elements (so eager's quadratic memory stays bounded; the fused kernel's is linear). Measured on
a 2-core AVX512-BF16 CPU with ``python benchmarks/attention_cpu_bf16.py``: eager was 1.6-2.5x
faster forward up to 1024 keys and 2-2.7x faster forward+backward up to 384 keys; at 512 keys a
whole encoder layer trained no faster with it, and beyond it is slower. Other devices and dtypes
always use the fused kernel. Replace ``SDPAttention.policy`` to change the thresholds.

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention_ops import AttentionBackend, eager_attention, merge_causal_mask, register_attention_backend

__all__ = ["SDPADispatchPolicy", "SDPAttention"]


@dataclass(frozen=True)
class SDPADispatchPolicy:
    """When the ``sdpa`` backend computes attention with the matmul path instead (see the module docstring).

    Attributes:
        max_keys: longest key length sent to the matmul path without gradients.
        max_keys_grad: the same when q, k or v needs a gradient.
        max_scores: most elements of the (B, H, Tq, Tk) score matrix (64 MiB in bf16).
        max_queries_any_keys: without gradients, calls with at most this many queries take the
            matmul path at any key length (decoding steps, Whisper's cross-attention over 1500
            frames: 5x faster for one query, 1.7x for 256).
    """

    max_keys: int = 768
    max_keys_grad: int = 384
    max_scores: int = 1 << 25
    max_queries_any_keys: int = 256

    def use_matmul_path(self, q: Tensor, k: Tensor, v: Tensor) -> bool:
        """True for a bfloat16 CPU call small enough for matmul + softmax to be the faster path."""
        if q.device.type != "cpu" or q.dtype != torch.bfloat16:
            return False
        grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        tq, tk = q.shape[-2], k.shape[-2]
        if q.numel() // q.shape[-1] * tk > self.max_scores:
            return False
        if grad:
            return tk <= self.max_keys_grad
        return tk <= self.max_keys or tq <= self.max_queries_any_keys


@register_attention_backend("sdpa")
class SDPAttention(AttentionBackend):
    """torch's fused ``scaled_dot_product_attention``; small bf16 CPU calls follow :attr:`policy`."""

    policy: ClassVar[SDPADispatchPolicy] = SDPADispatchPolicy()

    grouped_kv = True  # k, v may have Hkv heads (H a multiple): torch's enable_gqa, no copy

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        grouped = k.shape[1] != q.shape[1]
        if self.policy.use_matmul_path(q, k, v):
            if grouped:
                repeat = q.shape[1] // k.shape[1]
                k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)  # (B, H, Tk, Dh)
            return eager_attention(q, k, v, mask, is_causal, scale, dropout_p)
        tq, tk = q.shape[-2], k.shape[-2]
        if mask is None and (not is_causal or tq == tk):
            # torch's own causal flag is top-left aligned, which is ours when Tq == Tk.
            return F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=grouped
            )
        full = merge_causal_mask(mask, is_causal, tq, tk, q.device)
        if full.dtype != torch.bool:
            empty = torch.isneginf(full.amax(dim=-1, keepdim=True))
            full = full.masked_fill(empty, 0.0)
        else:
            empty = ~full.any(dim=-1, keepdim=True)
            full = full | empty
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=full, dropout_p=dropout_p, scale=scale, enable_gqa=grouped
        )
        return out.masked_fill(empty, 0.0)
