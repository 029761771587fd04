"""DNA pipeline tasks: dna-classification and dna-embedding.

- ``dna-classification`` (a fine-tuned DNA classifier or its run; default: the shipped splice-junction
  classifier): a sequence or a list of them -> the top label, its probability and every class's.
  With ``window``, a sequence longer than that is classified window by window (``overlap`` bases
  shared by neighbours): each window's scores, and their mean for the whole sequence. With
  ``rc_average`` the probabilities of both strands are averaged (for strand-symmetric labels).
- ``dna-embedding`` (any DNA encoder directory: pretrained, fine-tuned, or a Hugging Face DNABERT):
  a sequence or a list -> one vector each, the mean of the real tokens' last hidden states (or the
  ``[CLS]`` vector with ``pooling="cls"``).

Sequences are strings in any case with IUPAC codes (:func:`polyformer.bio.normalize_sequence`).

Shape legend: N sequences, K classes, D embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import PipelineTask, register_task, resolve_model_dir, string_batch

__all__ = ["DnaClassificationPipeline", "DnaEmbeddingPipeline", "build_dna_classification", "build_dna_embedding"]

SHIPPED_CLASSIFIER = "dnabert_splice"
DNA_INPUT = "DNA sequences as strings"


def _scores(labels: list[str], row: torch.Tensor) -> dict[str, Any]:
    best = int(row.argmax())
    return {"label": labels[best], "score": float(row[best]), "scores": dict(zip(labels, map(float, row)))}


class DnaClassificationPipeline:
    """Class probabilities of DNA sequences; see the module docstring.

    Args:
        bundle: a loaded sequence classifier (:func:`polyformer.bio.dnabert.load_dnabert`).
        window: classify sequences longer than this many bases window by window; None = whole.
        overlap: bases shared by neighbouring windows.
        rc_average: average both strands' probabilities.
        batch_size: sequences (or windows) per forward pass.
        device: where the model runs.
    """

    def __init__(
        self, bundle: Any, window: int | None = None, overlap: int = 0, rc_average: bool = False,
        batch_size: int = 64, device: str | torch.device = "cpu",
    ):  # fmt: skip
        if window is not None and not 0 <= overlap < window:
            raise ValueError(f"need 0 <= overlap < window, got window {window}, overlap {overlap}")
        self.bundle, self.window, self.overlap = bundle, window, overlap
        self.rc_average, self.batch_size = rc_average, batch_size
        bundle.model.to(torch.device(device)).eval()

    def __call__(self, sequences: str | Sequence[str]) -> Any:
        """One sequence -> one result dict; a list -> a list of them."""
        from polyformer.bio.data import sliding_windows
        from polyformer.bio.dnabert import classify_sequences

        batch, single = string_batch(sequences, "dna-classification", DNA_INPUT)
        if not batch:
            return []
        pieces: list[tuple[int, int, int, str]] = []  # (sequence index, start, end, window)
        for i, sequence in enumerate(batch):
            spans = [(0, sequence)] if self.window is None else sliding_windows(sequence, self.window, self.overlap)
            pieces += [(i, start, start + len(part), part) for start, part in spans]
        probabilities = classify_sequences(
            self.bundle, [p[3] for p in pieces], batch_size=self.batch_size, rc=self.rc_average
        )  # (windows, K)
        labels = self.bundle.labels
        results = []
        for i in range(len(batch)):
            rows = [k for k, piece in enumerate(pieces) if piece[0] == i]
            result = _scores(labels, probabilities[rows].mean(dim=0))
            if self.window is not None:
                result["windows"] = [
                    {"start": pieces[k][1], "end": pieces[k][2], **_scores(labels, probabilities[k])} for k in rows
                ]
            results.append(result)
        return results[0] if single else results


class DnaEmbeddingPipeline:
    """Sequence embeddings from a DNA encoder; see the module docstring."""

    def __init__(
        self, bundle: Any, pooling: str = "mean", normalize: bool = False, batch_size: int = 64,
        device: str | torch.device = "cpu",
    ):  # fmt: skip
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.bundle, self.pooling, self.normalize, self.batch_size = bundle, pooling, normalize, batch_size
        bundle.model.to(torch.device(device)).eval()

    def __call__(self, sequences: str | Sequence[str], as_tensor: bool = False) -> Any:
        """One sequence -> one vector (D floats); a list -> a list of them (or an (N, D) tensor)."""
        from polyformer.bio.dnabert import embed_sequences

        batch, single = string_batch(sequences, "dna-embedding", DNA_INPUT)
        if not batch:
            return torch.zeros(0, self.bundle.encoder.config.d_model) if as_tensor else []
        vectors = embed_sequences(self.bundle, batch, self.pooling, self.batch_size, self.normalize)
        if as_tensor:
            return vectors[0] if single else vectors
        return vectors[0].tolist() if single else vectors.tolist()


def build_dna_classification(
    model: str | Path, window: int | None = None, overlap: int = 0, rc_average: bool = False, batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> DnaClassificationPipeline:  # fmt: skip
    """dna-classification with a fine-tuned DNA classifier (or its run)."""
    from polyformer.bio.dnabert import load_dnabert

    bundle = load_dnabert(resolve_model_dir(model, "dna-classification"), task="sequence_classification")
    return DnaClassificationPipeline(bundle, window, overlap, rc_average, batch_size, device)


def build_dna_embedding(
    model: str | Path, pooling: str = "mean", normalize: bool = False, batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> DnaEmbeddingPipeline:  # fmt: skip
    """dna-embedding with any DNA encoder directory (ours or a Hugging Face DNABERT)."""
    from polyformer.bio.dnabert import load_dnabert

    bundle = load_dnabert(resolve_model_dir(model, "dna-embedding"), task="base")
    return DnaEmbeddingPipeline(bundle, pooling, normalize, batch_size, device)


for _task in (
    PipelineTask("dna-classification", build_dna_classification, "classes of DNA sequences (fine-tuned DNABERT)",
                 default_model=SHIPPED_CLASSIFIER, needs="a fine-tuned DNA classifier or its run directory",
                 families=("encoder",)),
    PipelineTask("dna-embedding", build_dna_embedding, "DNA sequence embeddings (DNABERT encoder)",
                 needs="a DNA encoder directory (pretrained or fine-tuned, ours or a Hugging Face DNABERT)",
                 families=("encoder",)),
):  # fmt: skip
    register_task(_task)
