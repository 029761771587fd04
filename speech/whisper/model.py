"""A Whisper-style encoder-decoder for speech recognition, built on core's stacks and token decoder.

The encoder turns log-mel features (B, M, F) into a memory (B, F / 2, D): two 1-D convolutions
(kernel 3, the second with stride 2) with GELU, plus a fixed sinusoidal table, then core's pre-norm
encoder stack. The decoder is core's :class:`~polyformer.core.TokenDecoder` (learned positions,
cross-attention to the memory, output tied to the token embeddings), so core's KV cache and
generation drive it. Attention has no key bias, as in Whisper.

Checkpoints of OpenAI's Whisper expect 30 s of features (F = 3000); a model trained here may take
any even number of frames up to ``2 * max_source_positions`` (shorter clips train faster).

Shape legend: B batch, M mel bins, F frames, S = F / 2 encoder positions, T tokens, D width, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyformer.core import KVCache, ModelOutput, PretrainedModel, StackOutput, TokenDecoder, build_encoder

from .config import WhisperConfig

__all__ = ["Whisper", "WhisperEncoder", "whisper_sinusoids"]


def whisper_sinusoids(length: int, dim: int, max_timescale: float = 10_000.0) -> Tensor:
    """Whisper's fixed encoder positions (length, D): sines in the first half of the channels,
    cosines in the second, with timescales spaced geometrically from 1 to ``max_timescale``."""
    if dim % 2 or dim < 4:
        raise ValueError(f"the sinusoid table needs an even width of at least 4, got {dim}")
    half = dim // 2
    rates = torch.exp(-math.log(max_timescale) / (half - 1) * torch.arange(half, dtype=torch.float64))
    angles = torch.arange(length, dtype=torch.float64)[:, None] * rates[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


class WhisperEncoder(nn.Module):
    """Conv stem + sinusoidal positions + pre-norm encoder stack (with its final norm).

    Attributes:
        conv1, conv2: the stem (M -> D, then D -> D with stride 2).
        positions: the (max_source_positions, D) table, a buffer saved with the weights.
        stack: core's :class:`~polyformer.core.TransformerEncoder`.
    """

    def __init__(self, config: WhisperConfig):
        super().__init__()
        d = config.d_model
        self.n_mels = config.n_mels
        self.conv1 = nn.Conv1d(config.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", whisper_sinusoids(config.max_source_positions, d))
        self.dropout = nn.Dropout(config.dropout)
        self.stack = build_encoder(config.block_spec(), config.encoder_layers)

    def forward(self, features: Tensor, **outputs: bool) -> StackOutput:
        """Features (B, M, F) -> the stack's output (B, F / 2, D)."""
        if features.dim() != 3 or features.shape[1] != self.n_mels:
            raise ValueError(f"features must be (B, {self.n_mels} mel bins, frames), got shape {tuple(features.shape)}")
        frames = features.shape[2]
        most = 2 * self.positions.shape[0]
        if frames % 2 or not 0 < frames <= most:
            raise ValueError(f"this model takes an even number of frames up to {most}, got {frames}")
        x = F.gelu(self.conv1(features.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, D)
        x = self.dropout(x + self.positions[: x.shape[1]])
        return self.stack(x, **outputs)


class Whisper(PretrainedModel):
    """The Whisper-style speech-to-text model.

    Attributes:
        encoder: the :class:`WhisperEncoder`.
        decoder: core's :class:`~polyformer.core.TokenDecoder` with cross-attention.
    """

    config_class = WhisperConfig
    config: WhisperConfig
    # The decoder counts as the head: the engine's freeze_backbone_steps holds the encoder still while it trains.
    head_prefixes = ("decoder",)

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        # No padding_idx: Whisper pads with <|endoftext|>, whose embedding is also the EOS logit
        # row (tied head), and it must be trainable.
        self.decoder = TokenDecoder(
            config.vocab_size,
            config.block_spec(),
            config.decoder_layers,
            cross_attention=True,
            position="learned",
            max_len=config.max_target_positions,
            dropout=config.dropout,
            pad_id=None,
            tie_embeddings=True,
        )
        # Blank = <|endoftext|>, which never occurs inside a transcription.
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size) if config.ctc_head else None

    def encode(self, features: Tensor, **outputs: bool) -> StackOutput:
        """Encode log-mel features (B, M, F) into the memory (B, F / 2, D)."""
        return self.encoder(features, **outputs)

    def forward(
        self,
        input_features: Tensor,
        decoder_input_ids: Tensor,
        decoder_attention_mask: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        ctc: bool = False,
    ) -> Tensor | ModelOutput | tuple[Tensor, Tensor]:
        """Teacher-forced logits (B, T, V) of ``decoder_input_ids`` (B, T) given features (B, M, F).

        ``decoder_attention_mask`` (B, T) is True for real tokens; right padding needs none (a
        causal decoder never looks ahead). With ``output_hidden_states`` or ``output_attentions`` a
        :class:`~polyformer.core.ModelOutput` with both stacks' outputs is returned. With ``ctc`` (a model
        with ``ctc_head``), ``(logits, ctc_logits (B, S, V))``.
        """
        outputs = dict(output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        encoded = self.encode(input_features, **outputs)
        logits, decoded = self.decoder(
            decoder_input_ids, token_mask=decoder_attention_mask, memory=encoded.last_hidden_state, **outputs
        )
        if ctc:
            if self.ctc_head is None:
                raise ValueError("this model has no CTC head (ctc_head=False in its config)")
            return logits, self.ctc_head(encoded.last_hidden_state)
        return ModelOutput(logits, decoded, encoded) if output_hidden_states or output_attentions else logits

    def new_cache(self, input_features: Tensor | None = None, memory: Tensor | None = None) -> KVCache:
        """The decoding state for :meth:`step`: encodes ``input_features`` unless ``memory`` is given."""
        if memory is None:
            if input_features is None:
                raise ValueError("new_cache needs input_features or an encoded memory")
            memory = self.encode(input_features).last_hidden_state
        return self.decoder.new_cache(memory)

    def step(self, tokens: Tensor, cache: KVCache, token_mask: Tensor | None = None) -> Tensor:
        """Logits (B, t, V) for the next tokens (B, t), extending ``cache``."""
        return self.decoder.step(tokens, cache, token_mask)

    @torch.no_grad()
    def generate(self, input_features: Tensor, prompt: Tensor | list[int], max_new_tokens: int = 224, **options: Any):
        """Decode from features (B, M, F) after ``prompt`` (a list of ids for every row, or (B, T));
        options as in :func:`~polyformer.core.generation.generate`. The prompt is not in the output."""
        from polyformer.core import generate_after_prompt

        c = self.config
        return generate_after_prompt(
            self, self.new_cache(input_features), prompt, input_features.shape[0], input_features.device,
            max_new_tokens, c.eos_id, c.pad_id, max_positions=c.max_target_positions, **options,
        )  # fmt: skip
