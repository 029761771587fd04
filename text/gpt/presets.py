"""GPT presets: decoder-only LMs in GPT-2's shape (Radford et al. 2019), registered in core's preset registry.

Pre-norm blocks, learned positions, tanh-GELU, tied LM head, as GPT-2; pass ``vocab_size`` for
your tokenizer (and ``eos_id``/``pad_id`` for its end token).
"""

from __future__ import annotations

from polyformer.core import DecoderOnlyTransformer, TransformerConfig, register_preset

__all__ = ["gpt2_small", "gpt_mini", "gpt_tiny"]


def _gpt(layers: int, width: int, heads: int, **overrides) -> DecoderOnlyTransformer:
    fields = dict(
        vocab_size=50257, d_model=width, num_heads=heads, encoder_layers=0, decoder_layers=layers, d_ff=4 * width,
        activation="gelu_tanh", norm_first=True, position="learned", max_len=1024, scale_embeddings=False,
        attention_dropout=0.1, pad_id=50256, bos_id=50256, eos_id=50256,
    )  # fmt: skip
    return DecoderOnlyTransformer(TransformerConfig(**{**fields, **overrides}))


@register_preset("gpt2_small", "gpt", "GPT-2 small: 12 layers, width 768, 12 heads (124M parameters)")
def gpt2_small(**overrides) -> DecoderOnlyTransformer:
    return _gpt(12, 768, 12, **overrides)


@register_preset("gpt_mini", "gpt", "mini GPT: 4 layers, width 256, 4 heads")
def gpt_mini(**overrides) -> DecoderOnlyTransformer:
    return _gpt(4, 256, 4, **overrides)


@register_preset("gpt_tiny", "gpt", "tiny GPT: 2 layers, width 128, 2 heads")
def gpt_tiny(**overrides) -> DecoderOnlyTransformer:
    return _gpt(2, 128, 2, **overrides)
