"""DNABERT and DNABERT-2 presets: named constructors in core's preset registry (``polyformer info`` lists them).

- DNABERT (Ji et al. 2021, "DNABERT: pre-trained Bidirectional Encoder Representations from Transformers
  model for DNA-language in genome", Bioinformatics 37(15)): BERT-base over overlapping k-mers, a
  vocabulary of 4^k + 5 tokens and 512 positions. ``k`` is an argument (3 to 6; DNABERT-6 is the default).
- DNABERT-2 (Zhou et al. 2024, ICLR): BERT-base over a 4,096-token DNA BPE vocabulary with ALiBi
  instead of learned positions (so sequences may be longer than in training) and a GEGLU feed-forward.

The small shapes (mini = 4 layers x 256, tiny = 2 x 128) are for CPUs and tests. Each preset builds a
masked-LM model (:class:`~polyformer.core.EncoderForMaskedLM`); other fields of
:class:`~polyformer.core.EncoderConfig` are keyword overrides.
"""

from __future__ import annotations

from polyformer.core import EncoderConfig, EncoderForMaskedLM, register_preset

from ..tokenizer import kmer_vocabulary

__all__ = ["dnabert2_base", "dnabert2_mini", "dnabert_base", "dnabert_mini", "dnabert_tiny"]

DNABERT2_VOCAB = 4096  # DNABERT-2's BPE vocabulary size


def _encoder(layers: int, width: int, heads: int, **overrides) -> EncoderForMaskedLM:
    fields = dict(num_layers=layers, d_model=width, num_heads=heads, d_ff=4 * width, max_len=512)
    return EncoderForMaskedLM(EncoderConfig(**{**fields, **overrides}))


def _dnabert(layers: int, width: int, heads: int, k: int, overrides: dict) -> EncoderForMaskedLM:
    return _encoder(layers, width, heads, **{"vocab_size": len(kmer_vocabulary(k)), **overrides})


def _dnabert2(layers: int, width: int, heads: int, overrides: dict) -> EncoderForMaskedLM:
    # GEGLU keeps BERT's 4*D inner width here, as DNABERT-2's released config does.
    shape = dict(vocab_size=DNABERT2_VOCAB, position="alibi", activation="geglu")
    return _encoder(layers, width, heads, **{**shape, **overrides})


@register_preset("dnabert_base", "dnabert", "DNABERT: BERT-base over overlapping k-mers (k=6: 4101 tokens)")
def dnabert_base(k: int = 6, **overrides) -> EncoderForMaskedLM:
    return _dnabert(12, 768, 12, k, overrides)


@register_preset("dnabert_mini", "dnabert", "DNABERT shape, 4 layers x 256, 4 heads (k-mers; k=6 default)")
def dnabert_mini(k: int = 6, **overrides) -> EncoderForMaskedLM:
    return _dnabert(4, 256, 4, k, overrides)


@register_preset("dnabert_tiny", "dnabert", "DNABERT shape, 2 layers x 128, 2 heads (k-mers; k=6 default)")
def dnabert_tiny(k: int = 6, **overrides) -> EncoderForMaskedLM:
    return _dnabert(2, 128, 2, k, overrides)


@register_preset("dnabert2_base", "dnabert", "DNABERT-2: BERT-base over 4096 BPE tokens, ALiBi, GEGLU")
def dnabert2_base(**overrides) -> EncoderForMaskedLM:
    return _dnabert2(12, 768, 12, overrides)


@register_preset("dnabert2_mini", "dnabert", "DNABERT-2 shape, 4 layers x 256, 4 heads (BPE, ALiBi, GEGLU)")
def dnabert2_mini(**overrides) -> EncoderForMaskedLM:
    return _dnabert2(4, 256, 4, overrides)
