"""Token-in, logits-out transformers: encoder-decoder (Vaswani et al. 2017) and decoder-only
(GPT, Radford et al. 2018), with incremental decoding through :class:`KVCache`.

:class:`TokenDecoder` is the decoding half on its own: token embedding, decoder stack and output
head, with the cache bookkeeping. It attends to any memory (B, S, D), so an encoder of audio
features or image features pairs with it as well as a token encoder does. It, and both models,
expose ``step(tokens, cache, token_mask)``, so the shared generation code
(:mod:`polyformer.core.generation`) drives any of them. Domain models (translation, causal LM,
ASR) build on these.

Shape legend: B batch, S source tokens, T target tokens, D model dim, H heads, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .attention_ops import backend_class
from .config import BlockSpec, TransformerConfig
from .feedforward import build_norm
from .kv_cache import KVCache, positions_from_mask
from .positional import ALiBi, LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from .pretrained import PretrainedModel
from .stacks import StackOutput, build_decoder, build_encoder

__all__ = [
    "DecoderOnlyTransformer",
    "EncoderDecoderTransformer",
    "ModelOutput",
    "TokenDecoder",
    "TokenEmbedding",
    "check_token_ids",
    "self_attention_mask",
]


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


class TokenEmbedding(nn.Module):
    """Token embedding, optionally scaled by sqrt(D), plus absolute positions and token types,
    then an optional norm (BERT) and dropout.

    Args:
        vocab_size: V.
        dim: D.
        position: ``sinusoidal`` or ``learned`` add vectors here; ``rotary``, ``alibi`` and
            ``none`` add nothing (they act inside attention).
        max_len: number of positions.
        scale: multiply token vectors by sqrt(D).
        dropout: dropout after the sum.
        padding_idx: token whose vector stays zero.
        type_vocab_size: token-type (segment) embeddings added to the sum; 0 = none.
        norm: applied to the sum before dropout, or None.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        position: str,
        max_len: int,
        scale: bool,
        dropout: float,
        padding_idx: int | None,
        type_vocab_size: int = 0,
        norm: nn.Module | None = None,
    ):
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
        self.token_types = nn.Embedding(type_vocab_size, dim) if type_vocab_size else None
        if self.token_types is not None:
            nn.init.normal_(self.token_types.weight, std=0.02)
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, ids: Tensor, positions: Tensor, token_types: Tensor | None = None, max_position: int | None = None
    ) -> Tensor:
        """Ids (B, T) at positions (B, T), token types (B, T) (default all 0) -> vectors (B, T, D).

        ``max_position``: a known upper bound of ``positions`` (a KV cache's length), which spares
        the range check its host sync.
        """
        x = self.tokens(ids) * self.scale  # (B, T, D)
        if self.positions is not None:
            x = x + self.positions(positions, max_position)
        if self.token_types is not None:
            if token_types is None:
                x = x + self.token_types.weight[0]
            else:
                if token_types.shape != ids.shape:
                    raise ValueError(
                        f"token_type_ids must match the ids' shape {tuple(ids.shape)}, got {tuple(token_types.shape)}"
                    )
                x = x + self.token_types(token_types)
        elif token_types is not None:
            raise ValueError("this model has no token-type embeddings (type_vocab_size=0); pass token_type_ids=None")
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


def check_token_ids(ids: Tensor, vocab_size: int, what: str) -> None:
    """Raise a ValueError unless ``ids`` is an integer (B, T) tensor of ids in [0, vocab_size)."""
    if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{what} must be an integer tensor (B, T), got {ids.dtype} {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{what} holds ids outside [0, {vocab_size}): min {int(ids.min())}, max {int(ids.max())}")


def self_attention_mask(
    alibi: ALiBi | None, q_positions: Tensor, k_positions: Tensor, key_mask: Tensor | None
) -> Tensor | None:
    """Boolean key-padding mask (B, 1, 1, Tk), or the ALiBi bias (B, H, Tq, Tk) with pads at -inf."""
    if alibi is None:
        return None if key_mask is None else key_mask[:, None, None, :]
    bias = alibi(q_positions, k_positions)
    return bias if key_mask is None else bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))


class TokenDecoder(nn.Module):
    """Token embedding + decoder stack + output head, with the incremental-decoding bookkeeping.

    Args:
        vocab_size: V.
        spec: what each decoder block is made of.
        num_layers: depth.
        cross_attention: blocks attend to a memory (encoder output); False = decoder-only.
        memory_dim: width of the memory when it differs from ``spec.dim``.
        position: ``sinusoidal`` | ``learned`` | ``rotary`` | ``alibi`` | ``none`` (rotary must
            match ``spec.rotary``).
        max_len: number of positions.
        scale_embeddings: multiply token vectors by sqrt(D).
        dropout: dropout after the embeddings.
        pad_id: token whose embedding stays zero, or None.
        tie_embeddings: the output head shares the token embedding matrix.
        final_norm: norm after the last block; default for pre-norm blocks.
        embedding_norm: a norm (the spec's kind) after the embedding sum.
        logits_bias: add a learned bias (V,) to the output logits.

    Attributes:
        embed: the :class:`TokenEmbedding`.
        stack: the :class:`~polyformer.core.stacks.TransformerDecoder`.
        lm_head: the (D -> V) output projection.
    """

    def __init__(
        self,
        vocab_size: int,
        spec: BlockSpec,
        num_layers: int,
        *,
        cross_attention: bool = True,
        memory_dim: int | None = None,
        position: str = "learned",
        max_len: int = 1024,
        scale_embeddings: bool = False,
        dropout: float = 0.0,
        pad_id: int | None = None,
        tie_embeddings: bool = True,
        final_norm: bool | None = None,
        embedding_norm: bool = False,
        logits_bias: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a token decoder needs at least one layer, got {num_layers}")
        if spec.rotary != (position == "rotary"):
            raise ValueError(
                f"position={position!r} and spec.rotary={spec.rotary} disagree; rotary positions need both"
            )
        if position == "alibi":
            backend_class(spec.backend).check_use(float_mask=True, where="ALiBi")
        self.vocab_size = vocab_size
        norm = build_norm(spec.norm, spec.dim, spec.norm_eps) if embedding_norm else None
        self.embed = TokenEmbedding(
            vocab_size, spec.dim, position, max_len, scale_embeddings, dropout, pad_id, norm=norm
        )  # fmt: skip
        self.stack = build_decoder(
            spec, num_layers, cross_attention=cross_attention, memory_dim=memory_dim, final_norm=final_norm
        )
        self.lm_head = nn.Linear(spec.dim, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight
        self.logits_bias = nn.Parameter(torch.zeros(vocab_size)) if logits_bias else None
        self.alibi = ALiBi(spec.num_heads) if position == "alibi" else None

    @classmethod
    def from_config(cls, config: TransformerConfig, cross_attention: bool) -> TokenDecoder:
        """The target side a :class:`~polyformer.core.config.TransformerConfig` describes."""
        return cls(
            config.vocab_size,
            config.block_spec(),
            config.decoder_layers,
            cross_attention=cross_attention,
            position=config.position,
            max_len=config.max_len,
            scale_embeddings=config.scale_embeddings,
            dropout=config.dropout,
            pad_id=config.pad_id,
            tie_embeddings=config.tie_embeddings,
            embedding_norm=config.embedding_norm,
            logits_bias=config.logits_bias,
        )

    def new_cache(self, memory: Tensor | None = None, memory_mask: Tensor | None = None) -> KVCache:
        """An empty decoding state; ``memory`` (B, S, D) and its mask (B, S) for cross-attention."""
        return KVCache.empty(len(self.stack.layers), memory, memory_mask)

    def forward(
        self,
        tokens: Tensor,
        *,
        token_mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        check_ids: bool = True,
    ) -> tuple[Tensor, StackOutput]:
        """Logits (B, T, V) for tokens (B, T), extending ``cache`` if given, and the stack's outputs.

        Args:
            tokens: target ids; with a cache they continue the cached tokens.
            token_mask: (B, T) True for real tokens (False = padding, e.g. left-padded prompts).
            memory: what cross-attention attends to (B, S, D); default ``cache.memory``.
            memory_mask: (B, S) True for real memory positions; default ``cache.memory_mask``.
            cache: the decoding state from :meth:`new_cache`.
            output_hidden_states: keep each layer's output.
            output_attentions: keep each layer's attention weights.
            check_ids: check that the ids are in the vocabulary (a host sync: :meth:`step`, fed by
                generation's own argmax or sampling, skips it).
        """
        if check_ids:
            check_token_ids(tokens, self.vocab_size, "target token ids")
        b, t = tokens.shape
        if cache is not None:
            positions = cache.advance(token_mask, b, t, tokens.device, track_positions=self.alibi is not None)
            key_mask, k_positions = cache.key_mask, cache.key_positions
            memory = cache.memory if memory is None else memory
            memory_mask = cache.memory_mask if memory_mask is None else memory_mask
        else:
            positions = positions_from_mask(token_mask, t, None, tokens.device).expand(b, t)
            key_mask, k_positions = token_mask, positions
        self_mask = self_attention_mask(self.alibi, positions, k_positions, key_mask)
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :]
        out = self.stack(
            self.embed(tokens, positions, max_position=None if cache is None else cache.length - 1),
            memory=memory,
            self_mask=self_mask,
            memory_mask=cross_mask,
            positions=positions,
            cache=cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        return (logits if self.logits_bias is None else logits + self.logits_bias), out

    def step(self, tokens: Tensor, cache: KVCache, token_mask: Tensor | None = None) -> Tensor:
        """Logits (B, t, V) for the next tokens (B, t), extending ``cache`` (ids from generation: not re-checked)."""
        return self(tokens, token_mask=token_mask, cache=cache, check_ids=False)[0]


class EncoderDecoderTransformer(PretrainedModel):
    """The encoder-decoder transformer of "Attention Is All You Need".

    Args:
        config: a :class:`TransformerConfig`; ``src_vocab_size`` None shares one embedding.

    Attributes:
        src_embed: source embedding: its own positions (and norm); its token matrix is the
            decoder's when the vocabulary is shared.
        encoder: the encoder stack.
        decoder: the :class:`TokenDecoder`.
    """

    config_class = TransformerConfig
    config: TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if config.encoder_layers < 1 or config.decoder_layers < 1:
            raise ValueError("an encoder-decoder model needs encoder_layers >= 1 and decoder_layers >= 1")
        self.decoder = TokenDecoder.from_config(config, cross_attention=True)
        norm = build_norm(config.norm, config.d_model, config.norm_eps) if config.embedding_norm else None
        self.src_embed = TokenEmbedding(
            config.src_vocab_size or config.vocab_size, config.d_model, config.position, config.max_len,
            config.scale_embeddings, config.dropout, config.pad_id, norm=norm,
        )  # fmt: skip
        if config.src_vocab_size is None:  # one vocabulary: one token matrix; positions and norm stay per side
            self.src_embed.tokens = self.decoder.embed.tokens
        self.encoder = build_encoder(config.block_spec(), config.encoder_layers)

    @property
    def src_vocab_size(self) -> int:
        return self.config.src_vocab_size or self.config.vocab_size

    def source_mask(self, src: Tensor) -> Tensor | None:
        """True for real source tokens (not ``pad_id``); None when nothing is padding."""
        mask = src.ne(self.config.pad_id)
        return None if bool(mask.all()) else mask

    def encode(self, src: Tensor, src_mask: Tensor | None = None, **outputs: bool) -> StackOutput:
        """Encode source ids (B, S); ``src_mask`` (B, S) True = real token, default from pad_id."""
        check_token_ids(src, self.src_vocab_size, "source token ids")
        if src_mask is None:
            src_mask = self.source_mask(src)
        positions = positions_from_mask(src_mask, src.shape[1], None, src.device).expand_as(src)
        mask = self_attention_mask(self.decoder.alibi, positions, positions, src_mask)
        return self.encoder(self.src_embed(src, positions), mask=mask, positions=positions, **outputs)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> Tensor | ModelOutput:
        """Teacher-forced logits (B, T, V) for target inputs ``tgt`` (B, T) given ``src`` (B, S).

        With ``output_hidden_states`` or ``output_attentions`` a :class:`ModelOutput` holding the
        logits and both stacks' per-layer outputs is returned instead.
        """
        if src_mask is None:
            src_mask = self.source_mask(src)
        outputs = dict(output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        encoded = self.encode(src, src_mask, **outputs)
        logits, decoded = self.decoder(tgt, memory=encoded.last_hidden_state, memory_mask=src_mask, **outputs)
        return ModelOutput(logits, decoded, encoded) if output_hidden_states or output_attentions else logits

    def new_cache(self, src: Tensor, src_mask: Tensor | None = None) -> KVCache:
        """Encode the source once and return the decoding state for :meth:`step`."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        return self.decoder.new_cache(self.encode(src, src_mask).last_hidden_state, src_mask)

    def step(self, tokens: Tensor, cache: KVCache, token_mask: Tensor | None = None) -> Tensor:
        """Logits (B, t, V) for the next target tokens (B, t), extending ``cache``."""
        return self.decoder.step(tokens, cache, token_mask)

    @torch.no_grad()
    def generate(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        max_new_tokens: int = 64,
        decoder_prompt: Tensor | list[int] | None = None,
        **options: Any,
    ):
        """Decode target ids for a source batch; options as in :func:`~polyformer.core.generation.generate`.

        Args:
            src: source ids (B, S).
            src_mask: (B, S) True = real token; default from ``pad_id``.
            max_new_tokens: most tokens generated after the prompt.
            decoder_prompt: the tokens every target starts with, a list of ids or a (B, T)
                tensor (several start tokens, as a multilingual model's language and task
                tokens); default ``[bos_id]``. They are not part of the output.
        """
        from .generation import generate_after_prompt

        cache = self.new_cache(src, src_mask)
        prompt = decoder_prompt if decoder_prompt is not None else [self.config.bos_id]
        return generate_after_prompt(
            self, cache, prompt, src.shape[0], src.device, max_new_tokens, self.config.eos_id, self.config.pad_id,
            **options,
        )  # fmt: skip


class DecoderOnlyTransformer(PretrainedModel):
    """A causal language model: a :class:`TokenDecoder` without cross-attention.

    Args:
        config: a :class:`TransformerConfig`; ``encoder_layers`` and ``src_vocab_size`` are unused.
    """

    config_class = TransformerConfig
    config: TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if config.decoder_layers < 1:
            raise ValueError("a decoder-only model needs decoder_layers >= 1")
        self.decoder = TokenDecoder.from_config(config, cross_attention=False)

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
        logits, decoded = self.decoder(input_ids, token_mask=attention_mask, cache=cache, **outputs)
        return ModelOutput(logits, decoded) if output_hidden_states or output_attentions else logits

    def new_cache(self, batch_size: int | None = None) -> KVCache:
        return self.decoder.new_cache()

    def step(self, tokens: Tensor, cache: KVCache, token_mask: Tensor | None = None) -> Tensor:
        return self.decoder.step(tokens, cache, token_mask)

    @torch.no_grad()
    def generate(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, max_new_tokens: int = 64, **options: Any
    ):
        """Continue left-padded prompts (B, T); options as in :func:`~polyformer.core.generation.generate`."""
        from .generation import generate

        options.setdefault("eos_id", self.config.eos_id)
        options.setdefault("pad_id", self.config.pad_id)
        return generate(
            self, self.new_cache(), input_ids, prompt_mask=attention_mask, max_new_tokens=max_new_tokens, **options
        )
