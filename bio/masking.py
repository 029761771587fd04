"""Masked-language-model masking of k-mer tokens, DNABERT's way (Ji et al. 2021, section 2.2).

Overlapping k-mers share k - 1 bases with each neighbour, so masking single tokens leaves every
masked base readable from the k-mers beside it and the model learns to copy. Masking a *base*
instead masks every k-mer that overlaps it: k consecutive tokens, of which the middle one's
bases are then covered by masked tokens only. :func:`mask_kmers` does that with core's span
masking (:func:`polyformer.core.mask_spans` with :func:`polyformer.core.contiguous_spans`
centred on the chosen token, as DNABERT's code centres its spans); non-overlapping k-mers share
no bases, so each token is masked alone, and so are DNA BPE tokens (:func:`polyformer.core.mask_tokens`). ``[CLS]``,
``[SEP]``, ``[UNK]`` and padding are never masked, and random replacements are k-mers only.

Shape legend: B batch, T tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyformer.core import MaskedBatch, contiguous_spans, mask_spans, mask_tokens

from .tokenizer import DnaTokenizer

__all__ = ["mask_kmers"]


def mask_kmers(
    ids: Tensor,
    tokenizer: DnaTokenizer,
    mask_prob: float = 0.15,
    attention_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Corrupt k-mer ids (B, T) for MLM; about ``mask_prob`` of the k-mers are selected, in spans of k.

    Returns:
        ``inputs``, the corrupted ids, and ``labels``, the original ids where selected (-100 elsewhere).
    """
    common = dict(
        mask_id=tokenizer.mask_id, vocab_size=tokenizer.vocab_size,
        special_ids=(tokenizer.cls_id, tokenizer.sep_id, tokenizer.unk_id), pad_id=tokenizer.pad_id,
        attention_mask=attention_mask, mask_prob=mask_prob, generator=generator,
    )  # fmt: skip
    if not tokenizer.overlapping:
        return mask_tokens(ids, **common)
    return mask_spans(ids, span_fn=contiguous_spans(tokenizer.k, centered=True), **common)
