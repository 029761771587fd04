"""An explicit key/value cache for incremental decoding.

Self-attention keys and values grow by the new tokens at each step; cross-attention keys and
values are computed once from the source and reused. Self-attention keys live in a buffer with
spare room that doubles when full, so a step writes only the new tokens (growing by
``torch.cat`` at every step copies the whole cache each time: quadratic in the decoded length;
``benchmarks/decoding.py`` measures both). Backends with a constant-size decoding state
(Performer) keep that state here instead of keys and values.

The cache also does the bookkeeping incremental decoding needs (:meth:`KVCache.advance`): which
cached keys are padding, the position of each row's next real token, the key positions for
relative-position biases (ALiBi), and the source padding mask. Beam search reorders it with
:meth:`KVCache.reorder`.

Shape legend: B batch (times beams), Hkv key/value heads, T cached tokens, t new tokens,
S source length, Dh head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["KVCache", "LayerKVCache"]

MIN_CAPACITY = 64  # tokens a self-attention buffer starts with (it doubles when full)


@dataclass
class LayerKVCache:
    """Cached tensors of one layer.

    Attributes:
        buffer_k: self-attention keys (B, Hkv, capacity, Dh); the first ``length`` are filled.
        buffer_v: self-attention values, the same shape.
        length: filled positions T.
        cross_k: cross-attention keys (B, Hkv, S, Dh), or None before the first step.
        cross_v: cross-attention values, the same shape.
        state: a backend's constant-size decoding state (Performer), or None.
    """

    buffer_k: Tensor | None = None
    buffer_v: Tensor | None = None
    length: int = 0
    cross_k: Tensor | None = None
    cross_v: Tensor | None = None
    state: Any = None

    @property
    def self_k(self) -> Tensor | None:
        """The cached self-attention keys (B, Hkv, T, Dh), a view of the buffer."""
        return None if self.buffer_k is None else self.buffer_k[:, :, : self.length]

    @property
    def self_v(self) -> Tensor | None:
        """The cached self-attention values (B, Hkv, T, Dh), a view of the buffer."""
        return None if self.buffer_v is None else self.buffer_v[:, :, : self.length]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write new self-attention keys/values (B, Hkv, t, Dh) and return all of them (views)."""
        end = self.length + k.shape[2]
        if self.buffer_k is None or end > self.buffer_k.shape[2]:
            self._grow(k, v, end)
        self.buffer_k[:, :, self.length : end] = k
        self.buffer_v[:, :, self.length : end] = v
        self.length = end
        return self.self_k, self.self_v

    def _grow(self, k: Tensor, v: Tensor, needed: int) -> None:
        old = 0 if self.buffer_k is None else self.buffer_k.shape[2]
        capacity = max(MIN_CAPACITY, 2 * old, needed)
        b, h, _, d = k.shape
        new_k = k.new_empty(b, h, capacity, d)  # (B, Hkv, capacity, Dh)
        new_v = v.new_empty(b, h, capacity, v.shape[-1])
        if self.length:
            new_k[:, :, : self.length] = self.self_k
            new_v[:, :, : self.length] = self.self_v
        self.buffer_k, self.buffer_v = new_k, new_v

    def reorder(self, index: Tensor, keep_source: bool = False) -> None:
        """Select/repeat batch rows (beam search); ``keep_source`` leaves the cross-attention entries."""
        for name in ("buffer_k", "buffer_v") if keep_source else ("buffer_k", "buffer_v", "cross_k", "cross_v"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))
        if self.state is not None:
            self.state = self.state.index_select(index)


def _extend(
    past: Tensor | None, new: Tensor | None, past_len: int, new_len: int, b: int, device: torch.device
) -> Tensor | None:
    """(B, T) + (B, t) key masks -> (B, T + t); None while every key is real."""
    if past is None and new is None:
        return None
    if past is None:
        past = torch.ones(b, past_len, dtype=torch.bool, device=device)
    if new is None:
        new = torch.ones(b, new_len, dtype=torch.bool, device=device)
    return torch.cat([past, new.bool()], dim=1)


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
        key_positions: (B, T) positions of the cached tokens, kept when :meth:`advance` is asked
            to (relative-position biases such as ALiBi need them).
        length: tokens seen so far T (also when a backend keeps a state instead of keys).
    """

    layers: list[LayerKVCache]
    key_mask: Tensor | None = None
    next_position: Tensor | None = None
    memory: Tensor | None = None
    memory_mask: Tensor | None = None
    key_positions: Tensor | None = None
    length: int = 0

    @classmethod
    def empty(cls, num_layers: int, memory: Tensor | None = None, memory_mask: Tensor | None = None) -> KVCache:
        return cls([LayerKVCache() for _ in range(num_layers)], memory=memory, memory_mask=memory_mask)

    def advance(
        self, token_mask: Tensor | None, batch: int, new: int, device: torch.device, track_positions: bool = False
    ) -> Tensor:
        """Account for ``new`` tokens per row about to be decoded; returns their positions (B, t).

        Real tokens count up from each row's ``next_position``; padding (``token_mask`` False)
        repeats the last position, so left-padded prompts start at 0. Updates ``key_mask``,
        ``next_position``, ``length`` and, with ``track_positions``, ``key_positions``.
        """
        start = self.next_position
        if start is None:
            start = torch.zeros(batch, dtype=torch.long, device=device)
        positions = positions_from_mask(token_mask, new, start, device).expand(batch, new)
        self.key_mask = _extend(self.key_mask, token_mask, self.length, new, batch, device)
        step = token_mask.long().sum(1) if token_mask is not None else torch.full((batch,), new, device=device)
        self.next_position = start + step
        if track_positions:
            past = self.key_positions
            self.key_positions = positions if past is None else torch.cat([past, positions], dim=1)
        self.length += new
        return positions

    def reorder(self, index: Tensor, keep_source: bool = False) -> None:
        """Select/repeat batch rows in place, e.g. to expand to beams or follow beam parents.

        ``keep_source``: the index only moves rows among rows with the same source (a beam's
        parent is a beam of the same input), so the cross-attention keys/values, memory and
        its mask stay as they are: for a long source (Whisper's 1500 frames) copying them at
        every step costs more than the step itself.
        """
        for layer in self.layers:
            layer.reorder(index, keep_source)
        names = ("key_mask", "next_position", "key_positions")
        for name in names if keep_source else (*names, "memory", "memory_mask"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))


def positions_from_mask(token_mask: Tensor | None, length: int, start: Tensor | None, device: torch.device) -> Tensor:
    """Position of each token (B, T): real tokens count up from ``start``; pads repeat the last.

    Left-padded prompts thus start at position 0 in every row.
    """
    if token_mask is None:
        positions = torch.arange(length, device=device).unsqueeze(0)
    else:
        positions = (token_mask.long().cumsum(1) - 1).clamp(min=0)
    return positions if start is None else positions + start.unsqueeze(1)
