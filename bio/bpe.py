"""Byte-pair encoding of DNA, DNABERT-2's tokenizer (Zhou et al. 2024, "DNABERT-2: Efficient Foundation
Model and Benchmark For Multi-Species Genome", ICLR; trained there with Hugging Face ``tokenizers``).

Instead of fixed k-mers, BPE learns variable-length DNA words from a corpus: it starts from the bases
and repeatedly merges the most frequent adjacent pair, so frequent motifs become single tokens and a
sequence needs about a fifth as many tokens as overlapping 6-mers. :class:`DnaBpeTokenizer` trains
and runs that model with Hugging Face ``tokenizers`` on normalised sequences
(:func:`~polyformer.bio.sequence.normalize_sequence`; the base alphabet is A, C, G, T and N, so every
normalised sequence tokenizes without unknown tokens and decodes back exactly). The special tokens
and their ids are those of the k-mer tokenizer (``[PAD] [UNK] [CLS] [SEP] [MASK]`` = 0..4) and an
encoded sequence is ``[CLS] tokens [SEP]``, so models, masking and padding treat both alike.

Shape legend: B batch, T tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from torch import Tensor

from .sequence import normalize_sequence
from .tokenizer import SPECIAL_TOKENS, DnaTokenizer

__all__ = ["BPE_ALPHABET", "DnaBpeTokenizer"]

BPE_ALPHABET = "ACGTN"
TOKENIZER_FILE = "tokenizer.json"


class DnaBpeTokenizer(DnaTokenizer):
    """DNA <-> BPE token ids, wrapping a Hugging Face ``tokenizers.Tokenizer``; see the module docstring.

    Build one with :meth:`train` or :meth:`load`.
    """

    overlapping = False  # tokens do not share bases (masking treats each token alone)

    def __init__(self, tokenizer):
        vocab = tokenizer.get_vocab()
        missing = [t for t in (*SPECIAL_TOKENS, *BPE_ALPHABET) if t not in vocab]
        if missing:
            raise ValueError(f"not a DNA BPE tokenizer: it lacks the tokens {missing}")
        self.tokenizer = tokenizer
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (vocab[t] for t in SPECIAL_TOKENS)
        self._tokens = {i: t for t, i in vocab.items()}

    @classmethod
    def train(cls, sequences: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> DnaBpeTokenizer:
        """Learn merges from DNA sequences (normalised first) until ``vocab_size`` tokens.

        Raises:
            ValueError: ``vocab_size`` below the special tokens plus the alphabet, or no sequences.
        """
        from tokenizers import Tokenizer, decoders, models, trainers

        floor = len(SPECIAL_TOKENS) + len(BPE_ALPHABET)
        if vocab_size <= floor:
            raise ValueError(f"vocab_size must exceed {floor} (special tokens plus {BPE_ALPHABET}), got {vocab_size}")
        corpus = [normalize_sequence(s, f"sequence {i + 1}") for i, s in enumerate(sequences)]
        if not any(corpus):
            raise ValueError("no DNA to train the BPE tokenizer on")
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.decoder = decoders.BPEDecoder(suffix="")  # tokens join without spaces
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=list(BPE_ALPHABET), show_progress=False,
        )  # fmt: skip
        tokenizer.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> DnaBpeTokenizer:
        """A tokenizer from its ``tokenizer.json`` (or the directory holding it).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a DNA BPE tokenizer.
        """
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: give a DNA BPE tokenizer.json or the directory holding it")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``directory``."""
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))
        return path

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def tokenize(self, sequence: str, record: str = "sequence") -> list[int]:
        """Token ids of a sequence (normalised first), without special tokens."""
        return self.tokenizer.encode(normalize_sequence(sequence, record), add_special_tokens=False).ids

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The sequence the ids came from (special tokens are dropped)."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        special = {self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id}
        return "".join(self._tokens[i] for i in ids if i not in special)
