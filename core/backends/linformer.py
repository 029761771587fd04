"""Linformer: keys and values projected along the sequence to a fixed length k.

Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity" (reference code
github.com/facebookresearch/fairseq/tree/main/examples/linformer and
github.com/lucidrains/linformer). Learned matrices E, F of shape (k, n) map the n keys and
values to k rows, ``softmax(q (E K)^T * scale) (F V)``, so time and memory grow as n * k.

E and F are parameters of this backend module, sized by ``max_len`` and sliced to the first
Tk columns for shorter inputs. Sharing (section 4 of the paper):

- ``share=layer`` (default, the paper's "headwise sharing"): one E and one F per layer, shared
  by all heads;
- ``share=head``: a separate E and F for every head;
- ``share=kv``: one matrix per layer used as both E and F ("key-value sharing").

Linformer mixes all positions before the softmax, so it cannot be causal (a ``ValueError``);
key-padding masks are honoured by zeroing the masked keys and values before the projection;
other masks are rejected.

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim, k projected length.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention_ops import AttentionBackend, key_padding_only, register_attention_backend, softmax_over_keys

__all__ = ["LinformerAttention", "SHARE_MODES"]

SHARE_MODES = ("layer", "head", "kv")


def _key_padding(mask: Tensor | None, tk: int) -> Tensor | None:
    """A boolean key mask (B|1, H|1, 1, Tk) from ``mask``, or a ValueError for other masks."""
    keep = key_padding_only(mask, "linformer")
    return None if keep is None else keep.expand(*keep.shape[:-1], tk)


@register_attention_backend("linformer")
class LinformerAttention(AttentionBackend):
    """Linformer attention with learned sequence projections E, F (see the module docstring).

    Spec: ``"linformer"`` (k=256), ``"linformer:128"``, ``"linformer:k=128,share=head"``.
    Needs ``max_len`` (models pass their ``max_len``).
    """

    options = {"k": int, "share": str}
    positional_option = "k"
    supports_causal = False
    masks = "key_padding"
    exact = False

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int | None = None, **options: Any):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_len=max_len, **options)
        self.k = int(options.get("k", 256))
        self.share = options.get("share", "layer")
        if self.k < 1:
            raise ValueError(f"linformer needs a projected length k >= 1, got {self.k}")
        if self.share not in SHARE_MODES:
            raise ValueError(f"linformer share must be one of {SHARE_MODES}, got {self.share!r}")
        if max_len is None or max_len < 1:
            raise ValueError(
                "linformer needs max_len (the longest key length) to size its projections; set the model's max_len"
            )
        heads = num_heads if self.share == "head" else 1
        bound = 1.0 / math.sqrt(max_len)  # nn.Linear(max_len, k) initialisation, as fairseq's Linformer
        self.proj_k = nn.Parameter(torch.empty(heads, self.k, max_len).uniform_(-bound, bound))
        self.proj_v = (
            None if self.share == "kv" else nn.Parameter(torch.empty(heads, self.k, max_len).uniform_(-bound, bound))
        )

    def project(self, x: Tensor, which: str) -> Tensor:
        """Project keys or values (B, H, Tk, Dh) along the sequence -> (B, H, k, Dh)."""
        weight = self.proj_k if which == "k" or self.proj_v is None else self.proj_v
        tk = x.shape[-2]
        return torch.matmul(weight[:, :, :tk].to(x.dtype), x)  # (1|H, k, Tk) @ (B, H, Tk, Dh)

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        if is_causal:
            raise ValueError(
                "linformer attention cannot be causal: its projections mix every position. "
                "Use it in encoders, or pick 'performer', 'local' or 'chunked' for decoders"
            )
        tk = k.shape[-2]
        if tk > self.max_len:
            raise ValueError(
                f"linformer was sized for max_len={self.max_len} keys but got {tk}; raise the model's max_len"
            )
        keep = _key_padding(mask, tk)
        if keep is not None:
            k = k * keep.transpose(-2, -1).to(k.dtype)  # (B, H, Tk, Dh) with masked keys zeroed
            v = v * keep.transpose(-2, -1).to(v.dtype)
        k_proj, v_proj = self.project(k, "k"), self.project(v, "v")  # (B, H, k, Dh)
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        weights = softmax_over_keys(torch.matmul(q, k_proj.transpose(-2, -1)) * scale)  # (B, H, Tq, k)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        out = torch.matmul(weights, v_proj)  # (B, H, Tq, Dh)
        if keep is not None:
            out = out.masked_fill(~keep.any(dim=-1, keepdim=True), 0.0)  # nothing to attend to -> zeros
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_len={self.max_len}"
