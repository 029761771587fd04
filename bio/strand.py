"""Both strands of DNA: reverse-complement augmentation for training and reverse-complement
averaged prediction for testing.

A DNA segment reads the same biology on either strand, so a classifier should not care which
strand a sequence was given on. :func:`rc_augment` replaces each training sequence by its
reverse complement with probability ``probability`` (fresh draws every epoch); :func:`rc_average`
runs a predictor on the sequences and on their reverse complements and averages the two, which
makes the prediction exactly strand-symmetric: a sequence and its reverse complement get the
same output, bit for bit (the two terms are added in either order, and float addition commutes).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from torch import Tensor

from .sequence import normalize_sequence, reverse_complement

__all__ = ["rc_augment", "rc_average"]


def rc_augment(sequences: Sequence[str], rng: random.Random, probability: float = 0.5) -> list[str]:
    """Each sequence (normalised), or with ``probability`` its reverse complement."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    out = []
    for i, sequence in enumerate(sequences):
        seq = normalize_sequence(sequence, f"sequence {i + 1}")
        out.append(reverse_complement(seq) if rng.random() < probability else seq)
    return out


def rc_average(predict: Callable[[list[str]], Tensor], sequences: Sequence[str]) -> Tensor:
    """``(predict(sequences) + predict(reverse complements)) / 2``: strand-symmetric predictions.

    Args:
        predict: maps a list of normalised sequences to a tensor with one row per sequence
            (probabilities or logits; averaging probabilities is DNABERT-2's test-time choice).
        sequences: the inputs, in any accepted case and IUPAC codes.
    """
    forward = [normalize_sequence(s, f"sequence {i + 1}") for i, s in enumerate(sequences)]
    reverse = [reverse_complement(s) for s in forward]
    return (predict(forward) + predict(reverse)) / 2
