"""k-mer tokenization of DNA (Ji et al. 2021, "DNABERT", Bioinformatics 37(15)).

:class:`KmerTokenizer` splits a normalised sequence (:func:`~polyformer.bio.sequence.normalize_sequence`)
into k-mers, k = 3 to 6:

- ``overlapping`` (DNABERT): one k-mer starting at every base, stride 1; a sequence of length L
  gives L - k + 1 tokens (a shorter one gives none);
- non-overlapping: stride k; L must be a multiple of k (a shorter last k-mer is not in the
  vocabulary, so a remainder is an error rather than silently dropped bases).

The vocabulary is DNABERT's, in its order, so DNABERT ``vocab.txt`` files load and saved ones
are theirs: ``[PAD] [UNK] [CLS] [SEP] [MASK]``, then the 4^k k-mers in the order of
``itertools.product("ATCG", repeat=k)`` (``AAA, AAT, AAC, AAG, ATA, ...``). A k-mer holding an
``N`` is ``[UNK]``, as in DNABERT. Encoded sequences are ``[CLS] k-mers [SEP]``.

Decoding rebuilds the sequence from the k-mers: each base is read from any known k-mer that
covers it; a base that only ``[UNK]`` k-mers cover is ``N``. So the round trip is exact for
every normalised sequence in which each base other than ``N`` lies in at least one k-mer
without an ``N`` (always true when ``N`` runs are at least k bases apart).

Shape legend: B batch, T tokens.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .sequence import normalize_sequence

__all__ = ["KMER_ALPHABET", "SPECIAL_TOKENS", "DnaTokenizer", "EncodedBatch", "KmerTokenizer", "kmer_vocabulary"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
KMER_ALPHABET = "ATCG"  # DNABERT's order of the bases in its vocabularies
VOCAB_FILE = "vocab.txt"


def kmer_vocabulary(k: int) -> list[str]:
    """DNABERT's vocabulary for ``k``: the five special tokens, then every k-mer."""
    if not 3 <= k <= 6:
        raise ValueError(f"k must be between 3 and 6 (DNABERT's k-mer sizes), got {k}")
    return [*SPECIAL_TOKENS, *("".join(p) for p in itertools.product(KMER_ALPHABET, repeat=k))]


@dataclass
class EncodedBatch:
    """Right-padded token ids (B, T), the mask of real tokens (B, T) and each row's length."""

    input_ids: Tensor
    attention_mask: Tensor
    lengths: list[int]


class DnaTokenizer:
    """What the DNA tokenizers share: ``[CLS] tokens [SEP]`` encoding and right-padded batches.

    Subclasses set ``pad_id``, ``cls_id``, ``sep_id`` (and the other special ids) and define
    :meth:`tokenize`, the ids of a sequence without special tokens.
    """

    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    overlapping: bool  # tokens share bases (overlapping k-mers): masking then masks spans

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def tokenize(self, sequence: str, record: str = "sequence") -> list[int]:
        raise NotImplementedError

    def encode(self, sequence: str, record: str = "sequence", max_tokens: int | None = None) -> list[int]:
        """``[CLS] tokens [SEP]``; with ``max_tokens``, the tokens are cut so the whole fits."""
        ids = self.tokenize(sequence, record)
        if max_tokens is not None:
            if max_tokens < 3:
                raise ValueError(f"max_tokens must leave room for [CLS], one token and [SEP], got {max_tokens}")
            ids = ids[: max_tokens - 2]
        return [self.cls_id, *ids, self.sep_id]

    def encode_batch(
        self, sequences: Sequence[str], max_tokens: int | None = None, records: Sequence[str] | None = None
    ) -> EncodedBatch:
        """Encode and right-pad with ``[PAD]``: ids (B, T) and the mask of real tokens (B, T)."""
        names = records if records is not None else [f"sequence {i + 1}" for i in range(len(sequences))]
        rows = [self.encode(s, name, max_tokens) for s, name in zip(sequences, names)]
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return EncodedBatch(ids, ids.ne(self.pad_id), [len(r) for r in rows])


class KmerTokenizer(DnaTokenizer):
    """DNA <-> k-mer token ids; see the module docstring.

    Args:
        k: k-mer length, 3 to 6.
        overlapping: stride 1 (DNABERT) instead of stride k.
        vocabulary: the tokens in id order (default: :func:`kmer_vocabulary`); a DNABERT
            ``vocab.txt`` read by :meth:`load` must hold the same tokens.
    """

    def __init__(self, k: int = 6, overlapping: bool = True, vocabulary: Sequence[str] | None = None):
        expected = kmer_vocabulary(k)
        vocabulary = list(vocabulary) if vocabulary is not None else expected
        if sorted(vocabulary) != sorted(expected):
            missing = sorted(set(expected) - set(vocabulary))[:3]
            extra = sorted(set(vocabulary) - set(expected))[:3]
            raise ValueError(
                f"not a {k}-mer vocabulary: {len(vocabulary)} tokens (expected {len(expected)}); "
                f"missing {missing}, unexpected {extra}"
            )
        self.k, self.overlapping = k, overlapping
        self.vocabulary = vocabulary
        self.ids = {token: i for i, token in enumerate(vocabulary)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.ids[t] for t in SPECIAL_TOKENS)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @classmethod
    def load(cls, path: str | Path, overlapping: bool = True) -> KmerTokenizer:
        """A tokenizer from a DNABERT ``vocab.txt`` (or the directory holding it); k is read from it.

        Raises:
            FileNotFoundError: no vocabulary file.
            ValueError: the file is not a 3- to 6-mer DNABERT vocabulary.
        """
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: give a DNABERT vocab.txt or the directory holding it")
        tokens = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kmers = [t for t in tokens if t not in SPECIAL_TOKENS]
        lengths = {len(t) for t in kmers}
        if len(lengths) != 1:
            raise ValueError(f"{path}: not a k-mer vocabulary (token lengths {sorted(lengths)[:5]})")
        return cls(lengths.pop(), overlapping, tokens)

    def save(self, directory: str | Path) -> Path:
        """Write ``vocab.txt`` (one token per line, in id order) into ``directory``."""
        path = Path(directory) / VOCAB_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(token + "\n" for token in self.vocabulary), encoding="utf-8")
        return path

    def kmers(self, sequence: str, record: str = "sequence") -> list[str]:
        """The k-mers of a sequence (normalised first; see :mod:`polyformer.bio.sequence`)."""
        seq = normalize_sequence(sequence, record)
        k = self.k
        if self.overlapping:
            return [seq[i : i + k] for i in range(len(seq) - k + 1)]
        if len(seq) % k:
            raise ValueError(
                f"{record}: non-overlapping {k}-mers need a length that is a multiple of {k}, got {len(seq)}"
            )
        return [seq[i : i + k] for i in range(0, len(seq), k)]

    def tokenize(self, sequence: str, record: str = "sequence") -> list[int]:
        """Token ids of the k-mers, without special tokens; a k-mer with an ``N`` is ``[UNK]``."""
        unk = self.unk_id
        return [self.ids.get(kmer, unk) for kmer in self.kmers(sequence, record)]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The sequence the k-mer ids came from (special tokens other than ``[UNK]`` are dropped)."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        skip = {self.pad_id, self.cls_id, self.sep_id, self.mask_id}
        kmers = [self.vocabulary[i] for i in ids if i not in skip]
        if not kmers:
            return ""
        k = self.k
        if not self.overlapping:
            return "".join("N" * k if kmer == "[UNK]" else kmer for kmer in kmers)
        bases = ["N"] * (len(kmers) + k - 1)
        for start, kmer in enumerate(kmers):
            if kmer != "[UNK]":
                bases[start : start + k] = kmer
        return "".join(bases)
