"""Multi-head attention: projections around a pluggable attention backend.

Covers self- and cross-attention (Vaswani et al. 2017), grouped-query and multi-query
attention (Ainslie et al. 2023, "GQA"; Shazeer 2019), optional rotary embeddings, position
terms added to queries and keys only (Carion et al. 2020, DETR: ``q = k = x + pos``, ``v = x``),
per-projection bias switches (Whisper's key projection has no bias), and incremental decoding
through :class:`~polyformer.core.kv_cache.LayerKVCache`.

The query, key and value projections are one fused matrix ``qkv_proj`` (rows q, k, v) when the
keys have the model width, as in timm and ``torch.nn.MultiheadAttention``. Inputs that are the
same tensor share one matrix product over the rows they need: self-attention is one GEMM,
DETR's self-attention two (q and k from ``x + pos``, v from ``x``), cross-attention two.

Shape legend: B batch, T query tokens, S key/value (source) tokens, D model dim, H query
heads, Hkv key/value heads, Dh head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention_ops import create_attention_backend, eager_attention, key_padding_only
from .kv_cache import LayerKVCache
from .positional import RotaryEmbedding, apply_rotary

__all__ = ["MultiHeadAttention", "fuse_qkv_state", "split_qkv_state"]

_PARTS = "qkv"


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class MultiHeadAttention(nn.Module):
    """Multi-head attention over separate (or shared) query, key and value inputs.

    Args:
        dim: model width D.
        num_heads: query heads H; must divide D.
        num_kv_heads: key/value heads Hkv (H = MHA, 1 = multi-query, between = GQA); must
            divide H. Default H.
        dropout: dropout on attention weights (training only).
        bias: default for every projection's bias.
        q_bias: bias of the query projection; None = ``bias``.
        k_bias: bias of the key projection (Whisper: False); None = ``bias``.
        v_bias: bias of the value projection; None = ``bias``.
        out_bias: bias of the output projection; None = ``bias``.
        backend: attention backend spec (``"sdpa"``, ``"eager"``, ``"local:256"``, ...).
        rotary: apply RoPE to q and k (self-attention only).
        rotary_dim: how many channels per head rotate (default all).
        rotary_base: RoPE angle base.
        cross: keys and values come from a separate context, which a cache projects once.
        kv_dim: width of the keys/values input for cross-attention (default D). Another width
            than D gives separate ``q_proj`` and fused ``kv_proj`` projections.
        max_len: longest key length (used by backends that need it, such as Linformer).

    Attributes:
        qkv_proj: fused (D + 2 Hkv Dh, D) projection, or None when ``kv_dim != D``.
        q_proj, kv_proj: the projections when ``kv_dim != D``, else None.
        out_proj: the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        q_bias: bool | None = None,
        k_bias: bool | None = None,
        v_bias: bool | None = None,
        out_bias: bool | None = None,
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
        kv_dim = dim if kv_dim is None else kv_dim
        if kv_dim != dim and not cross:
            raise ValueError(f"self-attention keys have the model width {dim}; kv_dim={kv_dim} needs cross=True")
        self.dim, self.num_heads, self.num_kv_heads = dim, num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        self.cross, self.dropout = cross, dropout
        kv_width = num_kv_heads * self.head_dim
        self.widths = {"q": dim, "k": kv_width, "v": kv_width}
        biases = {part: bias if b is None else b for part, b in zip(_PARTS, (q_bias, k_bias, v_bias))}
        self.qkv_proj = self.q_proj = self.kv_proj = None
        if kv_dim == dim:
            self.qkv_proj = nn.Linear(dim, dim + 2 * kv_width, bias=any(biases.values()))
            self._offsets = {"q": ("qkv_proj", 0), "k": ("qkv_proj", dim), "v": ("qkv_proj", dim + kv_width)}
        else:
            self.q_proj = nn.Linear(dim, dim, bias=biases["q"])
            self.kv_proj = nn.Linear(kv_dim, 2 * kv_width, bias=biases["k"] or biases["v"])
            self._offsets = {"q": ("q_proj", 0), "k": ("kv_proj", 0), "v": ("kv_proj", kv_width)}
        # Parts of a fused bias that are switched off stay zero through a mask (a buffer, not saved).
        for name in dict.fromkeys(owner for owner, _ in self._offsets.values()):
            module: nn.Linear = getattr(self, name)
            off = [
                (start, self.widths[part])
                for part, (owner, start) in self._offsets.items()
                if owner == name and not biases[part]
            ]
            if module.bias is None or not off:
                continue
            keep = torch.ones(module.out_features, dtype=torch.bool)
            for start, width in off:
                keep[start : start + width] = False
            with torch.no_grad():
                module.bias.masked_fill_(~keep.to(module.bias.device), 0.0)
            self.register_buffer(f"{name}_bias_keep", keep, persistent=False)
        self.out_proj = nn.Linear(dim, dim, bias=bias if out_bias is None else out_bias)
        self.backend = create_attention_backend(backend, num_heads=num_heads, head_dim=self.head_dim, max_len=max_len)
        self.rotary = RotaryEmbedding(self.head_dim, rotary_dim, rotary_base) if rotary else None

    def projection(self, parts: str) -> tuple[Tensor, Tensor | None]:
        """Weight and bias rows of consecutive parts (``"q"``, ``"kv"``, ``"qkv"``, ...): views, no copy."""
        name, start = self._offsets[parts[0]]
        stop = start + sum(self.widths[p] for p in parts)
        if any(self._offsets[p][0] != name for p in parts):
            raise ValueError(f"projections {parts!r} are not stored together")
        module: nn.Linear = getattr(self, name)
        whole = start == 0 and stop == module.out_features
        weight = module.weight if whole else module.weight[start:stop]
        bias = module.bias
        if bias is not None:
            keep = getattr(self, f"{name}_bias_keep", None)
            bias = bias if keep is None else bias * keep
            bias = bias if whole else bias[start:stop]
        return weight, bias

    def _project(self, groups: list[tuple[str, Tensor]]) -> dict[str, Tensor]:
        """One matrix product per group of parts sharing an input; returns (B, T, width) per part."""
        out: dict[str, Tensor] = {}
        for parts, x in groups:
            weight, bias = self.projection(parts)
            pieces = F.linear(x, weight, bias).split([self.widths[p] for p in parts], dim=-1)
            out.update(zip(parts, pieces))
        return out

    def _split(self, x: Tensor, heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, Dh)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        query_pos: Tensor | None = None,
        key_pos: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        key_positions: Tensor | None = None,
        cache: LayerKVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` (B, T, D) to ``key``/``value`` (B, S, D or kv_dim).

        Args:
            query: the queries' input.
            key: the keys' input; default ``query`` (self-attention). A cross-attention layer whose
                cache already holds the projected context may get None.
            value: the values' input; default ``key`` (without ``key_pos``).
            query_pos: added to ``query`` before the query projection only (DETR).
            key_pos: added to ``key`` before the key projection only; default ``query_pos`` when
                ``key`` defaults to ``query``.
            mask: boolean (True = may attend) or additive mask broadcastable to (B, H, T, S).
            is_causal: causal attention (aligned to the end of the cached keys).
            positions: (B, T) or (T,) positions of the queries, for rotary embeddings.
            key_positions: positions of the keys when they differ from the queries' (rotary).
            cache: this layer's cache; self-attention appends to it (or advances the backend's
                constant-size state), cross-attention fills it once and reuses it.
            return_weights: also return the attention weights (computed by the eager path).

        Returns:
            The output (B, T, D) and the weights (B, H, T, S) or None.
        """
        b, t, _ = query.shape
        if key is None and not self.cross:
            key = query
            key_pos = query_pos if key_pos is None else key_pos
        q_in = _with_pos(query, query_pos)
        cached_context = self.cross and cache is not None and cache.cross_k is not None
        if cached_context:
            q, k, v = self._split(self._project([("q", q_in)])["q"], self.num_heads), cache.cross_k, cache.cross_v
        else:
            if key is None:
                raise ValueError("cross-attention needs a key/value input (B, S, D)")
            value = key if value is None else value
            k_in = q_in if key is query and key_pos is query_pos else _with_pos(key, key_pos)
            flat = self._project(self._groups(q_in, k_in, value))
            q = self._split(flat["q"], self.num_heads)  # (B, H, T, Dh)
            k, v = (
                self._split(flat["k"], self.num_kv_heads),
                self._split(flat["v"], self.num_kv_heads),
            )  # (B, Hkv, S, Dh)
            if self.rotary is not None:
                q, k = self._rotate(q, k, positions, key_positions)
            if self.cross and cache is not None:
                # contiguous once per source, so no step re-copies them for its batched matmuls
                k, v = k.contiguous(), v.contiguous()  # (B, Hkv, S, Dh)
                cache.cross_k, cache.cross_v = k, v
        use_state = cache is not None and not self.cross and self.backend.decoding_state and not return_weights
        if cache is not None and not self.cross and not use_state:
            k, v = cache.append(k, v)
        grouped_backend = self.backend.grouped_kv and not use_state and not return_weights
        if self.num_kv_heads != self.num_heads and not grouped_backend:  # else the backend takes Hkv heads as they are
            repeat = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(repeat, dim=1)  # (B, H, S, Dh)
            v = v.repeat_interleave(repeat, dim=1)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if use_state:
            out = self._step_state(q, k, v, mask, is_causal, cache)
        elif return_weights:
            out, weights = eager_attention(q, k, v, mask, is_causal, None, dropout_p, return_weights=True)
        else:
            out = self.backend(q, k, v, mask, is_causal, None, dropout_p)
        out = out.transpose(1, 2).reshape(b, t, self.dim)  # (B, T, D)
        return self.out_proj(out), weights

    def _groups(self, q_in: Tensor, k_in: Tensor, v_in: Tensor) -> list[tuple[str, Tensor]]:
        """Which parts share an input (one GEMM each)."""
        if q_in is k_in and k_in is v_in:
            return [("qkv", q_in)]
        if q_in is k_in:
            return [("qk", q_in), ("v", v_in)]
        if k_in is v_in:
            return [("q", q_in), ("kv", k_in)]
        return [("q", q_in), ("k", k_in), ("v", v_in)]

    def _rotate(
        self, q: Tensor, k: Tensor, positions: Tensor | None, key_positions: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if positions is None:
            positions = torch.arange(q.shape[-2], device=q.device)
        cos, sin = self.rotary(positions)
        if key_positions is None:
            if k.shape[-2] != q.shape[-2]:
                raise ValueError("rotary attention over keys other than the queries needs key_positions")
            return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k_cos, k_sin = self.rotary(key_positions)
        return apply_rotary(q, cos, sin), apply_rotary(k, k_cos, k_sin)

    def _step_state(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, cache: LayerKVCache
    ) -> Tensor:
        """Causal attention of the new tokens from the backend's constant-size state (Performer)."""
        if not is_causal:
            raise ValueError(
                f"the {self.backend.name} decoding state is causal; a cached self-attention layer must be causal"
            )
        if cache.state is None:
            cache.state = self.backend.init_state(q.shape[0], q.device)
        keep = key_padding_only(mask, self.backend.name)
        new_keys = None if keep is None else keep[..., -k.shape[-2] :].reshape(keep.shape[0], -1)  # (B, t)
        out, cache.state = self.backend.step(q, k, v, cache.state, new_keys)
        return out


def fuse_qkv_state(
    state: dict[str, Tensor], parts: tuple[str, str, str] = ("q_proj", "k_proj", "v_proj")
) -> dict[str, Tensor]:
    """Join separate query/key/value projections of a renamed foreign state dict into ``qkv_proj``.

    For every ``<prefix>.q_proj.weight`` with its ``k_proj`` and ``v_proj`` siblings, the three
    weights (and biases) are concatenated in q, k, v order, as :class:`MultiHeadAttention` stores
    them. A bias missing for some parts but present for others (Whisper's key projection) is
    filled with zeros; a missing weight is left for the loader to report.
    """
    out = dict(state)
    q_name = f".{parts[0]}.weight"
    for key in [k for k in state if k.endswith(q_name)]:
        prefix = key[: -len(q_name)]
        names = [f"{prefix}.{part}" for part in parts]
        if not all(f"{name}.weight" in state for name in names):
            continue
        weights = [out.pop(f"{name}.weight") for name in names]
        out[f"{prefix}.qkv_proj.weight"] = torch.cat(weights)
        biases = [out.pop(f"{name}.bias", None) for name in names]
        if any(b is not None for b in biases):
            filled = [b if b is not None else w.new_zeros(w.shape[0]) for b, w in zip(biases, weights)]
            out[f"{prefix}.qkv_proj.bias"] = torch.cat(filled)
    return out


def split_qkv_state(
    state: dict[str, Tensor],
    parts: tuple[str, str, str] = ("q_proj", "k_proj", "v_proj"),
    drop_biases: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """The inverse of :func:`fuse_qkv_state`: every ``<prefix>.qkv_proj.<weight|bias>`` becomes
    ``<prefix>.<part>.<weight|bias>`` for the three ``parts``, in q, k, v order (contiguous).

    ``drop_biases`` names parts whose bias the foreign layout does not have (Whisper's key
    projection: :func:`fuse_qkv_state` filled it with zeros).
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        prefix, fused, kind = name.rpartition(".qkv_proj.")
        if not fused or kind not in ("weight", "bias"):
            out[name] = tensor
            continue
        for part, piece in zip(parts, tensor.chunk(3, dim=0)):
            if not (kind == "bias" and part in drop_biases):
                out[f"{prefix}.{part}.{kind}"] = piece.contiguous()
    return out

