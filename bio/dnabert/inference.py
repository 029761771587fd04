"""Prediction with a DNA encoder: class probabilities (optionally averaged over both strands) and embeddings.

Sequences are tokenized by the model's own tokenizer and run in batches. A sequence with more
tokens than the model has positions is an error that says to split it into windows
(:func:`polyformer.bio.data.sliding_windows`), never silently cut.

Shape legend: N sequences, K classes, D model dim.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from polyformer.core import EncoderForSequenceClassification, mean_pool

from ..strand import rc_average
from .pretrained import DnaModel

__all__ = ["classify_sequences", "embed_sequences"]


def _batches(bundle: DnaModel, sequences: Sequence[str], batch_size: int):
    """(ids, mask) batches on the model's device, checking each sequence fits the model."""
    if not sequences:
        raise ValueError("no sequences to run")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(bundle.model.parameters()).device
    limit = bundle.max_tokens
    for start in range(0, len(sequences), batch_size):
        chunk = list(sequences[start : start + batch_size])
        batch = bundle.tokenizer.encode_batch(chunk, records=[f"sequence {start + i + 1}" for i in range(len(chunk))])
        if limit is not None and batch.input_ids.shape[1] > limit:
            index = max(range(len(chunk)), key=lambda i: batch.lengths[i])
            raise ValueError(
                f"sequence {start + index + 1} has {batch.lengths[index]} tokens but the model takes at most {limit}; "
                "split long sequences into windows (polyformer.bio.data.sliding_windows; --window on the command line)"
            )
        yield batch.input_ids.to(device), batch.attention_mask.to(device)


@torch.no_grad()
def classify_sequences(bundle: DnaModel, sequences: Sequence[str], batch_size: int = 64, rc: bool = False) -> Tensor:
    """Class probabilities (N, K) of a sequence classifier, in the order of ``bundle.labels``.

    Args:
        bundle: a loaded sequence classifier.
        sequences: DNA sequences (any case, IUPAC codes).
        batch_size: sequences per forward pass.
        rc: average the probabilities of each sequence and its reverse complement (strand-symmetric).

    Raises:
        ValueError: not a sequence classifier, no sequences, a bad base, or a sequence too long for the model.
    """
    if not isinstance(bundle.model, EncoderForSequenceClassification):
        raise ValueError(
            f"this model is a {type(bundle.model).__name__}, not a sequence classifier; use one made by `bio finetune`"
        )

    def predict(batch_sequences: list[str]) -> Tensor:
        batches = _batches(bundle, batch_sequences, batch_size)
        return torch.cat([bundle.model(ids, mask).float().softmax(-1) for ids, mask in batches]).cpu()

    bundle.model.eval()
    return rc_average(predict, sequences) if rc else predict(list(sequences))


@torch.no_grad()
def embed_sequences(
    bundle: DnaModel, sequences: Sequence[str], pooling: str = "mean", batch_size: int = 64, normalize: bool = False
) -> Tensor:
    """One vector per sequence (N, D): the mean of the real tokens' last hidden states, or the ``[CLS]`` one.

    Raises:
        ValueError: an unknown pooling, no sequences, a bad base, or a sequence too long for the model.
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    encoder = bundle.encoder.eval()
    vectors = []
    for ids, mask in _batches(bundle, sequences, batch_size):
        hidden = encoder(ids, mask).last_hidden_state  # (B, T, D)
        pooled = hidden[:, 0] if pooling == "cls" else mean_pool(hidden, mask)
        vectors.append(F.normalize(pooled, dim=-1) if normalize else pooled)
    return torch.cat(vectors).float().cpu()
