"""Token-in, logits-out transformers: encoder-decoder (Vaswani et al. 2017) and decoder-only
(GPT, Radford et al. 2018), with incremental decoding through :class:`KVCache`.

Both expose ``step(tokens, cache, token_mask)`` so the shared generation code
(:mod:`polyformer.core.generation`) drives either. Domain models (translation, causal LM, ASR)
build on these.

Shape legend: B batch, S source tokens, T target tokens, D model dim, H heads, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import TransformerConfig
from .kv_cache import KVCache
from .positional import ALiBi, LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from .pretrained import PretrainedModel
from .stacks import StackOutput, build_decoder, build_encoder

__all__ = ["DecoderOnlyTransformer", "EncoderDecoderTransformer", "ModelOutput", "TokenEmbedding", "positions_from_mask"]


@dataclass
class ModelOutput:
    """Logits plus the per-layer outputs of the stacks (when asked for).

    Attributes:
        logits: (B, T, V).
        decoder: the decoder stack's :class:`StackOutput` (hidden states, self and cross weights).
        encoder: the encoder stack's :class:`StackOutput` (encoder-decoder models only).
    """

    logits: Tensor
    decoder: StackOutput
    encoder: StackOutput | None = None


def positions_from_mask(token_mask: Tensor | None, length: int, start: Tensor | None, device: torch.device) -> Tensor:
    """Position of each token (B, T): real tokens count up from ``start``; pads repeat the last.

    Left-padded prompts thus start at position 0 in every row.
    """
    if token_mask is None:
        positions = torch.arange(length, device=device).unsqueeze(0)
    else:
        positions = (token_mask.long().cumsum(1) - 1).clamp(min=0)
    return positions if start is None else positions + start.unsqueeze(1)


class TokenEmbedding(nn.Module):
    """Token embedding, optionally scaled by sqrt(D), plus absolute positions, then dropout.

    Args:
        vocab_size: V.
        dim: D.
        position: ``sinusoidal`` or ``learned`` add vectors here; ``rotary``, ``alibi`` and
            ``none`` add nothing (they act inside attention).
        max_len: number of positions.
        scale: multiply token vectors by sqrt(D).
        dropout: dropout after the sum.
        padding_idx: token whose vector stays zero.
    """

    def __init__(self, vocab_size: int, dim: int, position: str, max_len: int, scale: bool, dropout: float, padding_idx: int | None):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        nn.init.normal_(self.tokens.weight, std=dim**-0.5 if scale else 0.02)
        if padding_idx is not None:
            nn.init.zeros_(self.tokens.weight[padding_idx])
        self.scale = math.sqrt(dim) if scale else 1.0
        self.positions: nn.Module | None = None
        if position == "sinusoidal":
            self.positions = SinusoidalPositionalEmbedding(max_len, dim)
        elif position == "learned":
            self.positions = LearnedPositionalEmbedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, positions: Tensor) -> Tensor:
        x = self.tokens(ids) * self.scale  # (B, T, D)
        if self.positions is not None:
            x = x + self.positions(positions)
        return self.dropout(x)


def _check_ids(ids: Tensor, vocab_size: int, what: str) -> None:
    if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{what} must be an integer tensor (B, T), got {ids.dtype} {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{what} holds ids outside [0, {vocab_size}): min {int(ids.min())}, max {int(ids.max())}")


class _Seq2SeqBase(PretrainedModel):
    """Parts shared by both models: target embedding, decoder, output head, masks."""

    config_class = TransformerConfig
    config: TransformerConfig

    def _build_target_side(self, config: TransformerConfig, cross_attention: bool) -> None:
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, config.position, config.max_len, config.scale_embeddings, config.dropout, config.pad_id)
        self.decoder = build_decoder(config, cross_attention)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight
        self.alibi = ALiBi(config.num_heads) if config.position == "alibi" else None

    def _self_mask(self, q_positions: Tensor, k_positions: Tensor | None, key_mask: Tensor | None) -> Tensor | None:
        """Boolean key-padding mask (B, 1, 1, Tk), or the ALiBi bias (B, H, Tq, Tk) with pads at -inf."""
        if self.alibi is None:
            return None if key_mask is None else key_mask[:, None, None, :]
        bias = self.alibi(q_positions, q_positions if k_positions is None else k_positions)
        return bias if key_mask is None else bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))

    def _decode(
        self,
        tokens: Tensor,
        token_mask: Tensor | None,
        cache: KVCache | None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        **outputs: bool,
    ) -> tuple[Tensor, StackOutput]:
        """Run the decoder over tokens (B, T), extending ``cache`` if given; returns logits (B, T, V)."""
        _check_ids(tokens, self.config.vocab_size, "target token ids")
        b, t = tokens.shape
        start = key_mask = k_positions = None
        if cache is not None:
            start = cache.next_position
            if start is None:
                start = torch.zeros(b, dtype=torch.long, device=tokens.device)
            key_mask = _concat_masks(cache.key_mask, token_mask, cache.length, t, b, tokens.device)
        else:
            key_mask = token_mask
        positions = positions_from_mask(token_mask, t, start, tokens.device).expand(b, t)
        if cache is not None:
            cache.key_mask = key_mask
            step = token_mask.long().sum(1) if token_mask is not None else torch.full((b,), t, device=tokens.device)
            cache.next_position = start + step
            if self.alibi is not None:
                k_positions = torch.cat([cache.extra["positions"], positions], 1) if "positions" in cache.extra else positions
                cache.extra["positions"] = k_positions
            memory = cache.memory if memory is None else memory
            memory_mask = cache.memory_mask if memory_mask is None else memory_mask
        self_mask = self._self_mask(positions, k_positions, key_mask)
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :]
        x = self.embed(tokens, positions)
        out = self.decoder(x, memory, self_mask, cross_mask, positions, cache, **outputs)
        return self.lm_head(out.last_hidden_state), out


def _concat_masks(past: Tensor | None, new: Tensor | None, past_len: int, new_len: int, b: int, device: torch.device) -> Tensor | None:
    if past is None and new is None:
        return None
    if past is None:
        past = torch.ones(b, past_len, dtype=torch.bool, device=device)
    if new is None:
        new = torch.ones(b, new_len, dtype=torch.bool, device=device)
    return torch.cat([past, new.bool()], dim=1)


class EncoderDecoderTransformer(_Seq2SeqBase):
    """The encoder-decoder transformer of "Attention Is All You Need".

    Args:
        config: a :class:`TransformerConfig`; ``src_vocab_size`` None shares one embedding.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if config.encoder_layers < 1 or config.decoder_layers < 1:
            raise ValueError("an encoder-decoder model needs encoder_layers >= 1 and decoder_layers >= 1")
        self._build_target_side(config, cross_attention=True)
        if config.src_vocab_size is None:
            self.src_embed = self.embed
        else:
            self.src_embed = TokenEmbedding(config.src_vocab_size, config.d_model, config.position, config.max_len, config.scale_embeddings, config.dropout, config.pad_id)
        self.encoder = build_encoder(config)

    @property
    def src_vocab_size(self) -> int:
        return self.config.src_vocab_size or self.config.vocab_size

    def source_mask(self, src: Tensor) -> Tensor | None:
        """True for real source tokens (not ``pad_id``); None when nothing is padding."""
        mask = src.ne(self.config.pad_id)
        return None if bool(mask.all()) else mask

    def encode(self, src: Tensor, src_mask: Tensor | None = None, **outputs: bool) -> StackOutput:
        """Encode source ids (B, S); ``src_mask`` (B, S) True = real token, default from pad_id."""
        _check_ids(src, self.src_vocab_size, "source token ids")
        if src_mask is None:
            src_mask = self.source_mask(src)
        positions = positions_from_mask(src_mask, src.shape[1], None, src.device).expand_as(src)
        mask = self._self_mask(positions, None, src_mask)
        return self.encoder(self.src_embed(src, positions), mask, False, positions, **outputs)

    def forward(
        self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, output_hidden_states: bool = False, output_attentions: bool = False
    ) -> Tensor | ModelOutput:
        """Teacher-forced logits (B, T, V) for target inputs ``tgt`` (B, T) given ``src`` (B, S).

        With ``output_hidden_states`` or ``output_attentions`` a :class:`ModelOutput` holding the
        logits and both stacks' per-layer outputs is returned instead.
        """
        if src_mask is None:
            src_mask = self.source_mask(src)
        outputs = dict(output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        encoded = self.encode(src, src_mask, **outputs)
        logits, decoded = self._decode(tgt, None, None, encoded.last_hidden_state, src_mask, **outputs)
        return ModelOutput(logits, decoded, encoded) if output_hidden_states or output_attentions else logits

    def new_cache(self, src: Tensor, src_mask: Tensor | None = None) -> KVCache:
        """Encode the source once and return the decoding state for :meth:`step`."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask).last_hidden_state
        return KVCache.empty(len(self.decoder.layers), memory, src_mask)

    def step(self, tokens: Tensor, cache: KVCache, token_mask: Tensor | None = None) -> Tensor:
        """Logits (B, t, V) for the next target tokens (B, t), extending ``cache``."""
        logits, _ = self._decode(tokens, token_mask, cache)
        return logits

    @torch.no_grad()
    def generate(self, src: Tensor, src_mask: Tensor | None = None, max_new_tokens: int = 64, **options: Any):
        """Decode target ids for a source batch; options as in :func:`~polyformer.core.generation.generate`."""
        from .generation import generate

        cache = self.new_cache(src, src_mask)
        start = torch.full((src.shape[0], 1), self.config.bos_id, dtype=torch.long, device=src.device)
        options.setdefault("eos_id", self.config.eos_id)
        options.setdefault("pad_id", self.config.pad_id)
        return generate(self, cache, start, max_new_tokens=max_new_tokens, **options)


class DecoderOnlyTransformer(_Seq2SeqBase):
    """A causal language model: token embedding, causal decoder stack, output head.

    Args:
        config: a :class:`TransformerConfig`; ``encoder_layers`` and ``src_vocab_size`` are unused.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if config.decoder_layers < 1:
            raise ValueError("a decoder-only model needs decoder_layers >= 1")
        self._build_target_side(config, cross_attention=False)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> Tensor | ModelOutput:
        """Logits (B, T, V) for ``input_ids`` (B, T); ``attention_mask`` True = real token.

        With a cache, the tokens continue the cached ones and the cache is extended. With
        ``output_hidden_states`` or ``output_attentions`` a :class:`ModelOutput` is returned.
        """
        outputs = dict(output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits, decoded = self._decode(input_ids, attention_mask, cache, **outputs)
        return ModelOutput(logits, decoded) if output_hidden_states or output_attentions else logits

    def new_cache(self, batch_size: int | None = None) -> KVCache:
        return KVCache.empty(len(self.decoder.layers))

    def step(self, tokens: Tensor, cache: KVCache, token_mask: Tensor | None = None) -> Tensor:
        logits, _ = self._decode(tokens, token_mask, cache)
        return logits

    @torch.no_grad()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, max_new_tokens: int = 64, **options: Any):
        """Continue left-padded prompts (B, T); options as in :func:`~polyformer.core.generation.generate`."""
        from .generation import generate

        options.setdefault("eos_id", self.config.eos_id)
        options.setdefault("pad_id", self.config.pad_id)
        return generate(self, self.new_cache(), input_ids, prompt_mask=attention_mask, max_new_tokens=max_new_tokens, **options)
