"""An explicit key/value cache for incremental decoding.

Self-attention keys and values grow by the new tokens at each step; cross-attention keys and
values are computed once from the source and reused. The cache also carries the bookkeeping
that incremental decoding needs: which cached keys are padding, the next position of each
row, and the source padding mask. Beam search reorders it with :meth:`KVCache.reorder`.

Shape legend: B batch (times beams), Hkv key/value heads, T cached tokens, S source length,
Dh head dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["KVCache", "LayerKVCache"]


@dataclass
class LayerKVCache:
    """Cached tensors of one layer, each (B, Hkv, T or S, Dh) or None before first use."""

    self_k: Tensor | None = None
    self_v: Tensor | None = None
    cross_k: Tensor | None = None
    cross_v: Tensor | None = None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add new self-attention keys/values and return all of them."""
        if self.self_k is None:
            self.self_k, self.self_v = k, v
        else:
            self.self_k = torch.cat([self.self_k, k], dim=2)  # (B, Hkv, T + t, Dh)
            self.self_v = torch.cat([self.self_v, v], dim=2)
        return self.self_k, self.self_v

    def reorder(self, index: Tensor) -> None:
        for name in ("self_k", "self_v", "cross_k", "cross_v"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))


@dataclass
class KVCache:
    """The decoding state of a whole decoder stack.

    Attributes:
        layers: one :class:`LayerKVCache` per decoder layer.
        key_mask: (B, T) True for cached tokens that are real (not padding); None = all real.
        next_position: (B,) position index the next real token of each row takes.
        memory: encoder output (B, S, D) for encoder-decoder models (consumed by the first
            step, which fills the cross-attention caches).
        memory_mask: (B, S) True for real source tokens; None = all real.
    """

    layers: list[LayerKVCache]
    key_mask: Tensor | None = None
    next_position: Tensor | None = None
    memory: Tensor | None = None
    memory_mask: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def empty(cls, num_layers: int, memory: Tensor | None = None, memory_mask: Tensor | None = None) -> KVCache:
        return cls([LayerKVCache() for _ in range(num_layers)], memory=memory, memory_mask=memory_mask)

    @property
    def length(self) -> int:
        """Number of cached self-attention positions T (0 before the first step)."""
        first = self.layers[0].self_k if self.layers else None
        return 0 if first is None else first.shape[2]

    def reorder(self, index: Tensor) -> None:
        """Select/repeat batch rows in place, e.g. to expand to beams or follow beam parents."""
        for layer in self.layers:
            layer.reorder(index)
        for name in ("key_mask", "next_position", "memory", "memory_mask"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))
        self.extra = {name: value.index_select(0, index) for name, value in self.extra.items()}
