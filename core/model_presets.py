"""Presets of core's own token models (registered in :mod:`polyformer.core.presets` on import)."""

from __future__ import annotations

from .config import TransformerConfig
from .presets import register_preset
from .seq_models import DecoderOnlyTransformer, EncoderDecoderTransformer

__all__ = ["decoder_lm_tiny", "transformer_base", "transformer_tiny"]


@register_preset(
    "transformer_base", "transformer", "encoder-decoder base model of Vaswani et al. 2017 (65M parameters)"
)
def transformer_base(**overrides) -> EncoderDecoderTransformer:
    return EncoderDecoderTransformer(TransformerConfig(**overrides))


@register_preset("transformer_tiny", "transformer", "2+2-layer, width-128 pre-norm encoder-decoder for toy tasks")
def transformer_tiny(**overrides) -> EncoderDecoderTransformer:
    fields = dict(
        vocab_size=64,
        d_model=128,
        num_heads=4,
        encoder_layers=2,
        decoder_layers=2,
        d_ff=256,
        dropout=0.0,
        norm_first=True,
        position="learned",
        max_len=64,
    )
    return EncoderDecoderTransformer(TransformerConfig(**{**fields, **overrides}))


@register_preset("decoder_lm_tiny", "transformer", "2-layer, width-128 rotary decoder-only LM for toy tasks")
def decoder_lm_tiny(**overrides) -> DecoderOnlyTransformer:
    fields = dict(
        vocab_size=64,
        d_model=128,
        num_heads=4,
        decoder_layers=2,
        d_ff=256,
        dropout=0.0,
        norm_first=True,
        position="rotary",
        activation="swiglu",
        norm="rmsnorm",
        bias=False,
        max_len=256,
    )
    return DecoderOnlyTransformer(TransformerConfig(**{**fields, **overrides}))
