"""DNA sequences as text: the normalisation rule every reader and tokenizer applies, and the reverse complement.

The rule (:func:`normalize_sequence`), applied to every sequence before tokenization:

- lowercase letters are read as their uppercase bases: soft-masked (repeat) regions of a genome
  are ordinary sequence to the model;
- ``U`` (RNA) is read as ``T``;
- the IUPAC ambiguity codes ``R Y S W K M B D H V`` and ``N`` all become ``N`` (an unknown base);
- anything else (digits, spaces, gaps ``-`` / ``.``, ``*``, other letters) is an error that names
  the record and the 1-based position of the first bad character.

:func:`reverse_complement` maps ``A<->T``, ``C<->G`` and ``N->N`` on a normalised sequence and
reverses it; applying it twice gives the sequence back.
"""

from __future__ import annotations

import re

__all__ = ["DNA_BASES", "IUPAC_AMBIGUOUS", "SequenceError", "normalize_sequence", "reverse_complement"]

DNA_BASES = "ACGT"
IUPAC_AMBIGUOUS = "RYSWKMBDHVN"
_TRANSLATE = str.maketrans(
    {**{b: b for b in DNA_BASES}, **{b.lower(): b for b in DNA_BASES}, "U": "T", "u": "T",
     **{c: "N" for c in IUPAC_AMBIGUOUS}, **{c.lower(): "N" for c in IUPAC_AMBIGUOUS}}
)  # fmt: skip
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_NOT_NUCLEOTIDE = re.compile(r"[^ACGTN]")


class SequenceError(ValueError):
    """A sequence holding something that is not a nucleotide code; the message names where."""


def normalize_sequence(sequence: str, record: str = "sequence") -> str:
    """The sequence under the module's rule: uppercase ``ACGTN`` only.

    Args:
        sequence: bases in any case, RNA ``U``, IUPAC codes.
        record: what to call the sequence in an error (a FASTA id, ``file.csv line 7``).

    Raises:
        SequenceError: a character that is not a nucleotide code, with its 1-based position.
    """
    out = sequence.translate(_TRANSLATE)
    bad = _NOT_NUCLEOTIDE.search(out)
    if bad is not None:
        raise SequenceError(
            f"{record}: {sequence[bad.start()]!r} at position {bad.start() + 1} is not a nucleotide code "
            "(A, C, G, T/U, or an IUPAC ambiguity code such as N)"
        )
    return out


def reverse_complement(sequence: str) -> str:
    """The reverse complement of a normalised sequence (``ACGTN`` only)."""
    return sequence.translate(_COMPLEMENT)[::-1]
