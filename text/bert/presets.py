"""BERT presets: named constructors registered in core's preset registry (``polyformer info`` lists them).

Shapes from Devlin et al. 2019 (base) and Turc et al. 2019, "Well-Read Students Learn Better"
(the small BERTs: tiny = 2 layers x 128, mini = 4 x 256, small = 4 x 512). Each preset builds a
masked-LM model (:class:`~polyformer.core.EncoderForMaskedLM`); pass ``vocab_size`` for your tokenizer.
"""

from __future__ import annotations

from polyformer.core import EncoderConfig, EncoderForMaskedLM, register_preset

__all__ = ["bert_base", "bert_mini", "bert_small", "bert_tiny"]


def _bert(layers: int, width: int, heads: int, **overrides) -> EncoderForMaskedLM:
    fields = dict(num_layers=layers, d_model=width, num_heads=heads, d_ff=4 * width)
    return EncoderForMaskedLM(EncoderConfig(**{**fields, **overrides}))


@register_preset("bert_base", "bert", "BERT-base: 12 layers, width 768, 12 heads (110M parameters with 30522 tokens)")
def bert_base(**overrides) -> EncoderForMaskedLM:
    return _bert(12, 768, 12, **overrides)


@register_preset("bert_small", "bert", "small BERT: 4 layers, width 512, 8 heads")
def bert_small(**overrides) -> EncoderForMaskedLM:
    return _bert(4, 512, 8, **overrides)


@register_preset("bert_mini", "bert", "mini BERT: 4 layers, width 256, 4 heads")
def bert_mini(**overrides) -> EncoderForMaskedLM:
    return _bert(4, 256, 4, **overrides)


@register_preset("bert_tiny", "bert", "tiny BERT: 2 layers, width 128, 2 heads")
def bert_tiny(**overrides) -> EncoderForMaskedLM:
    return _bert(2, 128, 2, **overrides)
