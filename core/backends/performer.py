"""Performer attention (FAVOR+): softmax attention through positive orthogonal random features.

Choromanski et al. 2021, "Rethinking Attention with Performers" (reference code
github.com/google-research/google-research/tree/master/performer and
github.com/lucidrains/performer-pytorch). With random features w_1..w_m drawn as blocks of
orthogonal Gaussian rows (row norms chi-distributed) and
``phi(x) = exp(W x - |x|^2 / 2) / sqrt(m)``, ``exp(q . k)`` is estimated without bias by
``phi(q) . phi(k)``, so attention becomes ``phi(Q) (phi(K)^T V)`` normalised by
``phi(Q) (phi(K)^T 1)``: time and memory linear in the sequence length.

Numerical stabilisers are constants that cancel exactly between numerator and denominator: a
per-row maximum for queries and a per-(batch, head) running maximum for keys, carried the same
way as the online softmax. Causal attention processes keys in chunks: inside a chunk a small
(c x c) masked product, across chunks the prefix sums ``sum phi(k) v^T`` and ``sum phi(k)``
(the paper's prefix-sum algorithm, chunked for memory). The same routine decodes one token (or
one chunk) at a time from a constant-size :class:`PerformerState` via
:meth:`PerformerAttention.step`, and its outputs equal the full causal pass.

Only boolean key-padding masks (B, 1, 1, Tk) are supported (masked keys get zero features);
attention dropout is not (the weights are never formed).

Shape legend: B batch, H heads, Tq query length, Tk key length, Dh head dim, m random
features, c chunk length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention_ops import AttentionBackend, key_padding_only, register_attention_backend

__all__ = ["PerformerAttention", "PerformerState", "orthogonal_random_features"]


def orthogonal_random_features(num_features: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """(m, Dh) Gaussian rows, orthogonal within blocks of Dh, with chi-distributed norms."""
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        gaussian = torch.randn(dim, dim, generator=generator)
        q, _ = torch.linalg.qr(gaussian)
        blocks.append(q.T)
    rows = torch.cat(blocks)[:num_features]
    norms = torch.randn(num_features, dim, generator=generator).norm(dim=1, keepdim=True)
    return rows * norms


@dataclass
class PerformerState:
    """Constant-size causal state per (batch, head): prefix sums and the key stabiliser.

    Attributes:
        kv: sum of phi(k) [v, 1]^T over the keys so far, (B, H, m, Dh + 1), scaled by
            exp(-key_max); its last column is the normaliser sum of phi(k).
        key_max: running key stabiliser, (B, H); -inf before the first key.
        length: number of keys consumed.
    """

    kv: Tensor
    key_max: Tensor
    length: int = 0

    @classmethod
    def empty(
        cls,
        batch: int,
        heads: int,
        num_features: int,
        head_dim: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> PerformerState:
        kv = torch.zeros(batch, heads, num_features, head_dim + 1, device=device, dtype=dtype)
        key_max = torch.full((batch, heads), float("-inf"), device=device, dtype=dtype)
        return cls(kv, key_max)

    def index_select(self, index: Tensor) -> PerformerState:
        """The state of the batch rows ``index`` (beam search reorders caches with it)."""
        return PerformerState(self.kv.index_select(0, index), self.key_max.index_select(0, index), self.length)


def _with_ones(v: Tensor) -> Tensor:
    """[v, 1]: (B, H, T, Dh) -> (B, H, T, Dh + 1) float32, so one product gives numerator and normaliser."""
    return F.pad(v.float(), (0, 1), value=1.0)


def _divide(num_den: Tensor) -> Tensor:
    """(..., T, Dh + 1) numerator and normaliser -> (..., T, Dh), zeros where nothing was attended."""
    num, den = num_den[..., :-1], num_den[..., -1:]
    empty = den <= 0
    return (num / torch.where(empty, 1.0, den)).masked_fill(empty, 0.0)


def _causal_scan(
    q_feat: Tensor, k_logits: Tensor, v_ext: Tensor, state: PerformerState, chunk: int
) -> tuple[Tensor, PerformerState]:
    """Causal FAVOR+ over keys in chunks, continuing ``state``.

    Args:
        q_feat: query features (B, H, Tq, m); query i is aligned with the last Tq keys.
        k_logits: key exponents w.k - |k|^2/2 (B, H, Tk, m), -inf for masked keys.
        v_ext: values with a ones column, (B, H, Tk, Dh + 1).
        state: the prefix state before these keys.
        chunk: chunk length c.

    Returns:
        The output (B, H, Tq, Dh) and the state after all Tk keys.
    """
    tq, tk = q_feat.shape[-2], k_logits.shape[-2]
    offset = tk - tq
    kv, key_max = state.kv, state.key_max
    outs = []
    for cs in range(0, tk, chunk):
        ce = min(cs + chunk, tk)
        logits = k_logits[:, :, cs:ce]  # (B, H, c, m)
        new_max = torch.maximum(key_max, logits.detach().amax(dim=(-2, -1)))
        safe = torch.where(torch.isneginf(new_max), 0.0, new_max)
        k_feat = torch.exp(logits - safe[..., None, None])  # (B, H, c, m)
        kv = kv * torch.exp(key_max - safe)[..., None, None]  # same stabiliser for old and new keys
        qs, qe = max(cs - offset, 0), ce - offset
        if qe > qs:
            qf = q_feat[:, :, qs:qe]  # (B, H, cq, m), key positions qs+offset .. qe+offset-1
            scores = torch.matmul(qf, k_feat.transpose(-2, -1))  # (B, H, cq, c)
            rows = torch.arange(qs + offset, qe + offset, device=qf.device).unsqueeze(1)
            scores = scores.masked_fill(torch.arange(cs, ce, device=qf.device).unsqueeze(0) > rows, 0.0)
            outs.append(_divide(torch.matmul(qf, kv) + torch.matmul(scores, v_ext[:, :, cs:ce])))
        kv = kv + torch.matmul(k_feat.transpose(-2, -1), v_ext[:, :, cs:ce])
        key_max = new_max
    out = torch.cat(outs, dim=-2) if outs else v_ext.new_zeros(*v_ext.shape[:2], 0, v_ext.shape[-1] - 1)
    return out, PerformerState(kv, key_max, state.length + tk)


def _key_keep(mask: Tensor | None) -> Tensor | None:
    """A (B|1, H|1, Tk, 1) boolean keep-mask from a key-padding mask, else a ValueError."""
    keep = key_padding_only(mask, "performer")
    return None if keep is None else keep.transpose(-2, -1)


@register_attention_backend("performer")
class PerformerAttention(AttentionBackend):
    """FAVOR+ attention with positive orthogonal random features (see the module docstring).

    Spec: ``"performer"`` (256 features), ``"performer:128"``,
    ``"performer:features=128,redraw=1000,chunk=64"``. ``redraw=N`` draws new features every N
    training forward passes (0 = never); the features are a buffer saved with the model.
    """

    options = {"features": int, "redraw": int, "chunk": int}
    positional_option = "features"
    masks = "key_padding"
    exact = False
    decoding_state = True

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int | None = None, **options: Any):
        super().__init__(num_heads=num_heads, head_dim=head_dim, max_len=max_len, **options)
        self.num_features = int(options.get("features", 256))
        self.redraw = int(options.get("redraw", 0))
        self.chunk = int(options.get("chunk", 128))
        if self.num_features < 1:
            raise ValueError(f"performer needs features >= 1, got {self.num_features}")
        if self.redraw < 0:
            raise ValueError(f"performer redraw must be >= 0 (0 = never), got {self.redraw}")
        if self.chunk < 1:
            raise ValueError(f"performer chunk must be >= 1, got {self.chunk}")
        self.register_buffer("features", orthogonal_random_features(self.num_features, head_dim))
        self.calls_since_redraw = 0

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw a fresh set of random features in place."""
        fresh = orthogonal_random_features(self.num_features, self.head_dim, generator)
        self.features.copy_(fresh.to(self.features.device, self.features.dtype))
        self.calls_since_redraw = 0

    def _projection(self, x: Tensor, scale: float) -> Tensor:
        """w . x' with x' = x * sqrt(scale): (B, H, T, Dh) -> (B, H, T, m), one GEMM."""
        weight = (self.features.float() * math.sqrt(scale)).T  # (Dh, m)
        return torch.mm(x.float().reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], self.num_features)

    def _query_features(self, q: Tensor, scale: float) -> Tensor:
        """phi(q) up to a per-row constant, which cancels (so does the -|q'|^2 / 2 term)."""
        logits = self._projection(q, scale)
        return logits.sub_(logits.detach().amax(dim=-1, keepdim=True)).exp_()

    def _key_logits(self, k: Tensor, scale: float, keep: Tensor | None) -> Tensor:
        """Exponents w . k' - |k'|^2 / 2 (B, H, Tk, m); -inf for masked keys."""
        half_norm = 0.5 * scale * k.float().pow(2).sum(dim=-1, keepdim=True)  # (B, H, Tk, 1)
        if keep is not None:
            half_norm = half_norm.masked_fill(~keep, float("inf"))
        return self._projection(k, scale).sub_(half_norm)

    def _check(self, dropout_p: float) -> None:
        if dropout_p > 0.0:
            raise ValueError("performer attention does not support attention dropout; set attention_dropout=0")
        if self.training and self.redraw > 0:
            if self.calls_since_redraw >= self.redraw:
                self.redraw_features()
            self.calls_since_redraw += 1

    def forward(self, q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0):
        self._check(dropout_p)
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        keep = _key_keep(mask)
        q_feat, k_logits = self._query_features(q, scale), self._key_logits(k, scale, keep)
        if is_causal:
            state = PerformerState.empty(q.shape[0], q.shape[1], self.num_features, v.shape[-1], q.device)
            return _causal_scan(q_feat, k_logits, _with_ones(v), state, self.chunk)[0].to(q.dtype)
        key_max = k_logits.detach().amax(dim=(-2, -1), keepdim=True)
        k_feat = k_logits.sub_(torch.where(torch.isneginf(key_max), 0.0, key_max)).exp_()  # (B, H, Tk, m)
        kv = torch.matmul(k_feat.transpose(-2, -1), _with_ones(v))  # (B, H, m, Dh + 1)
        return _divide(torch.matmul(q_feat, kv)).to(q.dtype)  # (B, H, Tq, Dh)

    def init_state(self, batch: int, device: torch.device | None = None) -> PerformerState:
        """An empty causal decoding state for ``batch`` sequences."""
        return PerformerState.empty(batch, self.num_heads, self.num_features, self.head_dim, device)

    def step(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        state: PerformerState,
        key_mask: Tensor | None = None,
        scale: float | None = None,
    ) -> tuple[Tensor, PerformerState]:
        """Causal attention for the next t tokens from a constant-size state.

        Args:
            q: queries of the new tokens (B, H, t, Dh).
            k: keys of the new tokens (B, H, t, Dh).
            v: values of the new tokens (B, H, t, Dh).
            state: the state after the earlier tokens (:meth:`init_state` at the start).
            key_mask: optional (B, t) boolean, False for padding tokens.
            scale: score scale; default 1/sqrt(Dh).

        Returns:
            The outputs (B, H, t, Dh), equal to the full causal pass at these positions, and
            the new state.
        """
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        keep = None if key_mask is None else key_mask[:, None, :, None].bool()
        out, state = _causal_scan(
            self._query_features(q, scale), self._key_logits(k, scale, keep), _with_ones(v), state, self.chunk
        )
        return out.to(q.dtype), state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, features={self.num_features}"
