"""Word and character error rates (with ``jiwer``) on normalised transcripts.

:func:`normalize_transcript` makes a reference and a hypothesis comparable the usual way for
English ASR scoring: lowercase, hyphens and dashes to spaces, punctuation other than in-word
apostrophes removed, common title abbreviations spelled out (Mr. -> mister), whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import jiwer

__all__ = ["char_error_rate", "normalize_transcript", "word_error_rate"]

_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ms": "miss", "jr": "junior"}


def normalize_transcript(text: str) -> str:
    """Lowercase words separated by single spaces, for scoring."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\-\u2010-\u2015]", " ", text)
    text = re.sub(r"[’‘`]", "'", text)
    words = []
    for raw in text.split():
        word = re.sub(r"[^\w']", "", raw).strip("'")
        word = _ABBREVIATIONS.get(word, word)
        if word:
            words.append(word)
    return " ".join(words)


def _pairs(references: Sequence[str], hypotheses: Sequence[str], normalize: bool) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no transcripts to score")
    refs = [normalize_transcript(r) if normalize else r for r in references]
    hyps = [normalize_transcript(h) if normalize else h for h in hypotheses]
    if not any(refs):
        raise ValueError("every reference transcript is empty")
    return refs, hyps


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER: word substitutions + deletions + insertions over reference words."""
    refs, hyps = _pairs(references, hypotheses, normalize)
    kept = [(r, h) for r, h in zip(refs, hyps) if r]
    return float(jiwer.wer([r for r, _ in kept], [h for _, h in kept]))


def char_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> float:
    """Corpus CER: character edits over reference characters (spaces included)."""
    refs, hyps = _pairs(references, hypotheses, normalize)
    kept = [(r, h) for r, h in zip(refs, hyps) if r]
    return float(jiwer.cer([r for r, _ in kept], [h for _, h in kept]))
