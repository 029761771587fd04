"""What the DNA recipes share: the tokenizer a run uses, the batches, and the classifier metrics.

- :class:`DnaTokenizerSettings` / :func:`run_dna_tokenizer`: overlapping k-mers (DNABERT) or a DNA
  BPE trained on the training sequences (DNABERT-2); a resumed run keeps its saved tokenizer.
- :class:`RandomStrand`: training items on a random strand (reverse-complement augmentation, drawn
  from torch's global generator, which the engine seeds per sample and epoch, so a resumed run
  draws the same);
- :class:`DnaBatches`: the collate function: ``[CLS] tokens [SEP]`` right-padded ids with their mask.
- :func:`classifier_metrics`: accuracy, macro F1, MCC and macro AUROC (torchmetrics) of class
  probabilities against true classes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.apps.engine import resolve_checkpoint, run_of
from polyformer.bio import DnaBpeTokenizer, DnaTokenizer, KmerTokenizer, reverse_complement
from polyformer.bio.dnabert import load_dna_tokenizer, save_dna_tokenizer
from polyformer.bio.dnabert.pretrained import TOKENIZER_SETTINGS

__all__ = ["DnaBatches", "DnaTokenizerSettings", "RandomStrand", "classifier_metrics", "dna_tokenizer_files",
           "run_dna_tokenizer"]  # fmt: skip


@dataclass
class DnaTokenizerSettings:
    """How DNA becomes tokens (ignored when the model starts from a pretrained directory)."""

    kind: str = "kmer"  # kmer (DNABERT: overlapping k-mers) | bpe (DNABERT-2: byte-pair encoding)
    k: int = 6  # k-mer length, 3 to 6 (kmer)
    overlapping: bool = True  # stride 1 as DNABERT; false = stride k (kmer)
    vocab_size: int = 4096  # BPE vocabulary trained on the training sequences (bpe)

    def __post_init__(self) -> None:
        if self.kind not in ("kmer", "bpe"):
            raise ValueError(f"tokenizer.kind must be 'kmer' or 'bpe', got {self.kind!r}")
        if not 3 <= self.k <= 6:
            raise ValueError(f"tokenizer.k must be 3 to 6, got {self.k}")


def run_dna_tokenizer(
    settings: DnaTokenizerSettings, resume: str | None, sequences: Sequence[str]
) -> tuple[DnaTokenizer, str]:
    """The resumed run's tokenizer, else a new one as ``settings`` say; and where it came from."""
    if resume:
        run = run_of(resolve_checkpoint(resume))
        if (run / TOKENIZER_SETTINGS).is_file():
            return load_dna_tokenizer(run), f"the resumed run's ({run})"
    if settings.kind == "kmer":
        tokenizer = KmerTokenizer(settings.k, settings.overlapping)
        stride = "overlapping" if settings.overlapping else "non-overlapping"
        return tokenizer, f"{stride} {settings.k}-mers, {tokenizer.vocab_size} tokens"
    trained = DnaBpeTokenizer.train(sequences, vocab_size=settings.vocab_size)
    return trained, f"DNA BPE, {trained.vocab_size} tokens, trained on the training sequences"


def dna_tokenizer_files(tokenizer: DnaTokenizer) -> dict[str, str]:
    """The tokenizer's files as ``{name: text}`` (for the run directory)."""
    with tempfile.TemporaryDirectory(prefix="dna-tokenizer-") as tmp:
        save_dna_tokenizer(tokenizer, tmp)
        return {path.name: path.read_text(encoding="utf-8") for path in Path(tmp).iterdir()}


class RandomStrand(Dataset):
    """Items (sequences or ``(sequence, label)`` pairs), each on its reverse strand with probability ``rc_prob``."""

    def __init__(self, items: Sequence[Any], rc_prob: float):
        self.items, self.rc_prob = items, rc_prob

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        item = self.items[index]
        if self.rc_prob <= 0 or torch.rand(()).item() >= self.rc_prob:  # seeded per sample by the engine
            return item
        return (reverse_complement(item[0]), *item[1:]) if isinstance(item, tuple) else reverse_complement(item)


@dataclass
class DnaBatches:
    """Collate DNA items into model inputs.

    Items are sequences (masked-LM batches: ``{"input_ids", "attention_mask"}``) or ``(sequence,
    class index)`` pairs (classification batches: ``(inputs, labels)``).

    Args:
        tokenizer: the run's tokenizer.
        max_tokens: cut each sequence's tokens to fit (windows are sized to fit already).
    """

    tokenizer: DnaTokenizer
    max_tokens: int | None = None

    def __call__(self, items: Sequence[Any]) -> Any:
        labelled = isinstance(items[0], tuple)
        sequences = [item[0] for item in items] if labelled else list(items)
        batch = self.tokenizer.encode_batch(sequences, self.max_tokens)
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if not labelled:
            return inputs
        return inputs, torch.tensor([item[1] for item in items])


def classifier_metrics(probabilities: Tensor, targets: Tensor) -> dict[str, float]:
    """Accuracy, macro F1, Matthews correlation and macro one-vs-rest AUROC of (N, K) probabilities."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_auroc,
        multiclass_f1_score,
        multiclass_matthews_corrcoef,
    )

    k = probabilities.shape[1]
    predictions = probabilities.argmax(dim=1)
    return {
        "accuracy": float(multiclass_accuracy(predictions, targets, k, average="micro")),
        "f1": float(multiclass_f1_score(predictions, targets, k, average="macro")),
        "mcc": float(multiclass_matthews_corrcoef(predictions, targets, k)),
        "auroc": float(multiclass_auroc(probabilities, targets, k, average="macro")),
    }
