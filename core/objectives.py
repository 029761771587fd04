"""Pretraining objectives as pure functions: masked tokens, masked spans, next-token targets, token cross-entropy.

* :func:`mask_tokens`: BERT's masked language modelling (Devlin et al. 2019, "BERT: Pre-training of Deep
  Bidirectional Transformers for Language Understanding"): each maskable token is selected with probability
  ``mask_prob`` (15%); a selected token becomes ``mask_id`` (80%), a random token (10%) or stays as it is (10%),
  and only selected tokens are predicted. Special tokens and padding are never selected.
* :func:`mask_spans`: the same corruption over whole spans, as in SpanBERT (Joshi et al. 2020, "SpanBERT:
  Improving Pre-training by Representing and Predicting Spans") and DNABERT (Ji et al. 2021, "DNABERT:
  pre-trained Bidirectional Encoder Representations from Transformers model for DNA-language in genome"). DNABERT's
  overlapping k-mer tokens share k-1 letters with each neighbour, so a lone masked k-mer could be read off its
  neighbours; it masks runs of k consecutive k-mers instead: ``mask_spans(ids, span_fn=contiguous_spans(k), ...)``.
* :func:`next_token_targets`: inputs and shifted targets for causal language modelling and teacher forcing.
* :func:`token_cross_entropy`: the mean cross-entropy over the tokens that have a label.
* :func:`ctc_loss`, :func:`ctc_greedy_decode` and :func:`ctc_beam_search`: connectionist temporal classification
  (Graves et al. 2006) of frame logits against label sequences, its greedy read-out (best class per frame, repeats
  merged, blanks dropped) and the prefix beam search (the labelling most likely over all its alignments, within a
  beam), for any model that emits one distribution per frame (wav2vec 2.0, a Whisper encoder's CTC head).

Conventions: a label of :data:`IGNORE_INDEX` (-100, the default ``ignore_index`` of
:func:`torch.nn.functional.cross_entropy`) means "not predicted". Ids are integer tensors (int64 usually) with values
in ``[0, vocab_size)``. Every random choice takes an optional ``torch.Generator`` (on the device of ``ids``); with the
same generator state the result is the same, and ``None`` uses torch's global generator of that device.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "ContiguousSpans",
    "MaskedBatch",
    "NextTokenBatch",
    "SpanFunction",
    "contiguous_spans",
    "ctc_beam_search",
    "ctc_greedy_decode",
    "ctc_loss",
    "mask_spans",
    "mask_tokens",
    "maskable_positions",
    "next_token_targets",
    "token_cross_entropy",
]

IGNORE_INDEX = -100
"""Label of a position that is not predicted (the default ``ignore_index`` of ``F.cross_entropy``)."""

SpanFunction = Callable[[Tensor, Tensor, torch.Generator | None], Tensor]
"""``span_fn(starts, maskable, generator) -> masked``: all (B, T) bool; grows span starts into whole spans.

``starts`` are the randomly chosen span starts (always maskable), ``maskable`` the positions that may be masked.
The result may be any bool (B, T) tensor; :func:`mask_spans` drops whatever falls outside ``maskable``.
"""


class MaskedBatch(NamedTuple):
    """A corrupted batch and its labels.

    Attributes:
        inputs: (B, T) the ids fed to the model, same dtype as the original ids.
        labels: (B, T) int64: the original id at every selected position, :data:`IGNORE_INDEX` elsewhere.
    """

    inputs: Tensor
    labels: Tensor

    @property
    def selected(self) -> Tensor:
        """(B, T) bool: the positions to predict."""
        return self.labels.ne(IGNORE_INDEX)


class NextTokenBatch(NamedTuple):
    """Inputs and next-token targets for causal language modelling or teacher forcing.

    Attributes:
        inputs: (B, T-1) ``ids[:, :-1]``.
        targets: (B, T-1) int64 ``ids[:, 1:]``, :data:`IGNORE_INDEX` where the target or its input is padding.
        attention_mask: (B, T-1) bool, True = real input token; None when no padding was described.
    """

    inputs: Tensor
    targets: Tensor
    attention_mask: Tensor | None


def maskable_positions(
    ids: Tensor,
    *,
    special_ids: Sequence[int] = (),
    pad_id: int | None = None,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Positions that a masking objective may select: not a special token and not padding.

    Args:
        ids: (B, T) integer token ids.
        special_ids: ids never selected (e.g. CLS, SEP, MASK, BOS, EOS).
        pad_id: id of padding; None = padding is described by ``attention_mask`` only (or there is none).
        attention_mask: (B, T) bool, True = real token; False positions are padding.

    Returns:
        (B, T) bool, True = maskable.

    Raises:
        ValueError: ``ids`` is not a 2-D integer tensor, or ``attention_mask`` is not bool of the same shape.
    """
    _check_ids(ids)
    real = _real_tokens(ids, pad_id, attention_mask)
    maskable = torch.ones_like(ids, dtype=torch.bool) if real is None else real.clone()
    excluded = sorted({int(i) for i in special_ids})
    if excluded:
        maskable &= ~torch.isin(ids, torch.tensor(excluded, dtype=ids.dtype, device=ids.device))
    return maskable


def mask_tokens(
    ids: Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    pad_id: int | None = None,
    attention_mask: Tensor | None = None,
    mask_prob: float = 0.15,
    replace_prob: float = 0.8,
    random_prob: float = 0.1,
    random_ids: Sequence[int] | Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """BERT masking: select tokens, then replace them by ``mask_id``, a random token, or leave them.

    Each maskable token (see :func:`maskable_positions`; ``mask_id`` itself also counts as special) is selected
    independently with probability ``mask_prob``, so a row may have no selected token at all (the expected number is
    ``mask_prob`` times its maskable tokens). Each selected token then independently becomes ``mask_id`` with
    probability ``replace_prob``, a random token with probability ``random_prob``, and keeps its id otherwise.

    Random tokens are drawn uniformly from ``random_ids``; by default from the whole vocabulary except
    ``special_ids``, ``pad_id`` and ``mask_id`` (original BERT drew from the whole vocabulary; a random [CLS] or
    [PAD] inside a sentence only adds noise). A random token may equal the original one, as in BERT.

    Args:
        ids: (B, T) integer token ids in ``[0, vocab_size)``.
        mask_id: the [MASK] id.
        vocab_size: V, the size of the output vocabulary.
        special_ids: ids never selected and never drawn as random tokens.
        pad_id: padding id, never selected; None = padding only via ``attention_mask``.
        attention_mask: (B, T) bool, True = real token; False positions are never selected.
        mask_prob: probability that a maskable token is selected, in (0, 1).
        replace_prob: probability that a selected token becomes ``mask_id``.
        random_prob: probability that a selected token becomes a random token; ``replace_prob + random_prob <= 1``,
            the rest is left unchanged.
        random_ids: candidate ids for random replacement (1-D), overriding the default.
        generator: source of randomness; None = torch's global generator.

    Returns:
        The corrupted inputs and the labels (original ids where selected, :data:`IGNORE_INDEX` elsewhere).

    Raises:
        ValueError: bad shapes, dtypes, ids outside the vocabulary, rates outside their ranges, or no candidate
            for random replacement while ``random_prob > 0``.
    """
    candidates, maskable = _prepare_masking(
        ids, mask_id, vocab_size, special_ids, pad_id, attention_mask, mask_prob, replace_prob, random_prob,
        random_ids, generator,
    )  # fmt: skip
    selected = maskable & _uniform(ids, generator).lt(mask_prob)
    return _corrupt(ids, selected, mask_id, candidates, replace_prob, random_prob, False, generator)


def mask_spans(
    ids: Tensor,
    *,
    span_fn: SpanFunction,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    pad_id: int | None = None,
    attention_mask: Tensor | None = None,
    mask_prob: float = 0.15,
    start_prob: float | None = None,
    replace_prob: float = 0.8,
    random_prob: float = 0.1,
    per_span: bool = True,
    random_ids: Sequence[int] | Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Span masking: choose span starts, grow them into whole spans with ``span_fn``, then corrupt as BERT does.

    Each maskable token (as in :func:`mask_tokens`) is a span start independently with probability ``start_prob``;
    ``span_fn(starts, maskable, generator)`` turns the starts into the masked positions, restricted to ``maskable``.
    Overlapping or touching spans merge. ``start_prob`` defaults to ``span_fn.start_prob(mask_prob)`` when the span
    function has that method (:class:`ContiguousSpans` does: for spans of length L it is ``1 - (1 - mask_prob) **
    (1 / L)``, so a token with L possible starts covering it is masked with probability exactly ``mask_prob``;
    tokens within L-1 of an edge, a special token or padding have fewer, so the masked fraction of short segments
    is a little lower). Other span functions need an explicit ``start_prob``.

    The 80/10/10 choice is made per span by default (SpanBERT): every token of a maximal run of masked tokens becomes
    ``mask_id``, or every one a random token (drawn independently), or the whole run stays unchanged; with
    ``per_span=False`` it is made per token as in :func:`mask_tokens`. Random tokens as in :func:`mask_tokens`.

    Args:
        ids: (B, T) integer token ids in ``[0, vocab_size)``.
        span_fn: see :data:`SpanFunction`, e.g. ``contiguous_spans(6)`` for DNABERT's 6-mers.
        mask_id: the [MASK] id.
        vocab_size: V.
        special_ids: ids never masked and never drawn as random tokens.
        pad_id: padding id, never masked.
        attention_mask: (B, T) bool, True = real token.
        mask_prob: target fraction of maskable tokens to mask, in (0, 1); used only to derive ``start_prob``.
        start_prob: probability that a maskable token starts a span, in (0, 1]; overrides ``mask_prob``.
        replace_prob: probability that a span (token, with ``per_span=False``) becomes ``mask_id``.
        random_prob: probability that it becomes random tokens; ``replace_prob + random_prob <= 1``.
        per_span: decide mask / random / unchanged once per run of masked tokens (True) or per token (False).
        random_ids: candidate ids for random replacement (1-D), overriding the default.
        generator: source of randomness, also handed to ``span_fn``.

    Returns:
        The corrupted inputs and the labels (original ids where masked, :data:`IGNORE_INDEX` elsewhere).

    Raises:
        ValueError: as :func:`mask_tokens`; also no way to derive ``start_prob``, or ``span_fn`` returning something
            other than a (B, T) bool tensor.
    """
    candidates, maskable = _prepare_masking(
        ids, mask_id, vocab_size, special_ids, pad_id, attention_mask, mask_prob, replace_prob, random_prob,
        random_ids, generator,
    )  # fmt: skip
    if start_prob is None:
        derive = getattr(span_fn, "start_prob", None)
        if not callable(derive):
            raise ValueError("pass start_prob: span_fn has no start_prob(mask_prob) method to derive it from")
        start_prob = float(derive(mask_prob))
    if not 0.0 < start_prob <= 1.0:
        raise ValueError(f"start_prob must be in (0, 1], got {start_prob}")
    starts = maskable & _uniform(ids, generator).lt(start_prob)
    spans = span_fn(starts, maskable, generator)
    if not isinstance(spans, Tensor) or spans.dtype != torch.bool or spans.shape != ids.shape:
        got = f"{spans.dtype} {tuple(spans.shape)}" if isinstance(spans, Tensor) else type(spans).__name__
        raise ValueError(f"span_fn must return a bool tensor of shape {tuple(ids.shape)}, got {got}")
    return _corrupt(ids, spans & maskable, mask_id, candidates, replace_prob, random_prob, per_span, generator)


@dataclass(frozen=True)
class ContiguousSpans:
    """A :data:`SpanFunction`: each start grows into ``span_length`` consecutive tokens.

    A span never crosses a non-maskable token (special or padding) and is clipped at the sequence ends, so it can be
    shorter than ``span_length`` there. With ``centered`` the span covers ``start - (L - 1) // 2`` to
    ``start + L // 2`` (DNABERT's reference code centres its k-mer spans this way); otherwise ``start`` to
    ``start + L - 1``. Both give the same masking rate away from edges.

    Attributes:
        span_length: L >= 1 (L = k for DNABERT's k-mers).
        centered: centre the span on its start position.
    """

    span_length: int
    centered: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.span_length, bool) or not isinstance(self.span_length, int) or self.span_length < 1:
            raise ValueError(f"span_length must be an integer >= 1, got {self.span_length!r}")

    def start_prob(self, mask_prob: float) -> float:
        """Start probability that masks an interior token with probability ``mask_prob``."""
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        return 1.0 - (1.0 - mask_prob) ** (1.0 / self.span_length)

    def __call__(self, starts: Tensor, maskable: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Masked positions (B, T) bool from span starts (B, T) bool within maskable (B, T) bool."""
        if starts.shape != maskable.shape or starts.dtype != torch.bool or maskable.dtype != torch.bool:
            raise ValueError("starts and maskable must be bool tensors of the same shape")
        starts = starts & maskable
        segment = torch.cumsum(~maskable, dim=1)  # changes at every non-maskable token: spans stay within one value
        left = (self.span_length - 1) // 2 if self.centered else 0
        covered = torch.zeros_like(starts)
        for offset in range(-left, self.span_length - left):  # position i is covered by a start at i - offset
            same_segment = _shift(segment, offset, fill=-1).eq(segment)
            covered |= _shift(starts, offset, fill=False) & same_segment
        return covered & maskable


def contiguous_spans(span_length: int, *, centered: bool = False) -> ContiguousSpans:
    """A span function for :func:`mask_spans` that masks ``span_length`` consecutive tokens per start.

    See :class:`ContiguousSpans`. For DNABERT with k-mer tokens: ``contiguous_spans(k, centered=True)``.
    """
    return ContiguousSpans(span_length, centered)


def next_token_targets(
    ids: Tensor, *, attention_mask: Tensor | None = None, pad_id: int | None = None
) -> NextTokenBatch:
    """Causal language modelling pairs: the model reads ``ids[:, :-1]`` and predicts ``ids[:, 1:]``.

    A target is ignored (:data:`IGNORE_INDEX`) where it is padding, and also where the token before it is padding,
    since nothing real precedes it (left padding). Padding is ``attention_mask == False`` and/or ``ids == pad_id``;
    with neither, every target counts. Also used for teacher forcing: with ``tgt`` = BOS ... EOS, the decoder reads
    ``inputs`` and learns ``targets``.

    Args:
        ids: (B, T) integer token ids, T >= 2.
        attention_mask: (B, T) bool, True = real token.
        pad_id: padding id.

    Returns:
        inputs (B, T-1), targets (B, T-1) int64, and the inputs' attention mask (B, T-1) (None without padding info).

    Raises:
        ValueError: ``ids`` not a 2-D integer tensor with T >= 2, or a bad ``attention_mask``.
    """
    _check_ids(ids)
    if ids.shape[1] < 2:
        raise ValueError(f"next-token targets need at least 2 tokens per row, got shape {tuple(ids.shape)}")
    real = _real_tokens(ids, pad_id, attention_mask)
    inputs, targets = ids[:, :-1], ids[:, 1:].long()
    if real is None:
        return NextTokenBatch(inputs, targets, None)
    targets = targets.masked_fill(~(real[:, 1:] & real[:, :-1]), IGNORE_INDEX)
    return NextTokenBatch(inputs, targets, real[:, :-1])


def token_cross_entropy(
    logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0
) -> Tensor:
    """Mean cross-entropy over the labelled tokens.

    Half-precision logits are upcast to float32. Equal to ``F.cross_entropy(logits.flatten(0, -2), labels.flatten(),
    ignore_index=ignore_index, label_smoothing=label_smoothing)`` when some token has a label; when none has, it is
    0 (not NaN) and still part of the autograd graph, so ``backward`` works and every parameter gets a zero gradient
    (a batch without any masked token does not stop training nor break DDP).

    Args:
        logits: (B, T, V) (or any (..., V)).
        labels: (B, T) (or the leading shape of ``logits``) integer targets in ``[0, V)`` or ``ignore_index``.
        ignore_index: label of positions that are not predicted.
        label_smoothing: in [0, 1), as in ``F.cross_entropy``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: mismatching shapes, integer logits, non-integer labels or ``label_smoothing`` out of range.
    """
    if logits.ndim < 2 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating tensor (..., V), got {logits.dtype} {tuple(logits.shape)}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels {tuple(labels.shape)} must match the leading dims of logits {tuple(logits.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    flat_labels = labels.reshape(-1).long()
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_labels, ignore_index=ignore_index,
                            reduction="sum", label_smoothing=label_smoothing)  # fmt: skip
    count = flat_labels.ne(ignore_index).sum().clamp(min=1)
    return total / count


def ctc_loss(
    logits: Tensor,
    frame_lengths: Tensor,
    labels: Tensor,
    *,
    blank: int = 0,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    zero_infinity: bool = True,
) -> Tensor:
    """CTC loss of frame logits against padded label rows (torch's ``ctc_loss``, computed in float32).

    Args:
        logits: (B, S, V) one distribution per frame (before softmax).
        frame_lengths: (B,) real frames of each row (at most S).
        labels: (B, T) label ids; ``ignore_index`` marks padding (it may appear anywhere, it is skipped).
        blank: the blank class; no label may be it.
        reduction: ``"mean"`` (each row's loss divided by its label count, then averaged: torch's and
            transformers' ``"mean"``), ``"sum"`` (transformers' Wav2Vec2 default) or ``"none"`` (per row).
        zero_infinity: a row whose labels cannot fit its frames costs 0 instead of infinity.

    Raises:
        ValueError: mismatching shapes, a blank label, a frame length beyond S, or an unknown reduction.
    """
    _check_frame_logits(logits)
    if labels.ndim != 2 or labels.shape[0] != logits.shape[0] or frame_lengths.shape != (logits.shape[0],):
        raise ValueError(
            f"labels (B, T) and frame_lengths (B,) must match logits (B, S, V): got {tuple(labels.shape)}, "
            f"{tuple(frame_lengths.shape)} and {tuple(logits.shape)}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    valid = labels.ne(ignore_index)
    if bool((labels[valid] == blank).any()):
        raise ValueError(f"a label equals the blank class {blank}")
    if bool((frame_lengths > logits.shape[1]).any()) or bool((frame_lengths < 0).any()):
        raise ValueError(f"frame_lengths must be within [0, {logits.shape[1]}], got {frame_lengths.tolist()}")
    log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (S, B, V)
    return F.ctc_loss(log_probs, labels[valid].long(), frame_lengths.long(), valid.sum(dim=1), blank=blank,
                      reduction=reduction, zero_infinity=zero_infinity)  # fmt: skip


def ctc_greedy_decode(logits: Tensor, frame_lengths: Tensor | None = None, *, blank: int = 0) -> list[list[int]]:
    """Greedy CTC read-out: each frame's best class, repeats merged, blanks dropped (per row, its real frames only).

    Args:
        logits: (B, S, V) (log-probabilities or logits: only the argmax matters).
        frame_lengths: (B,) real frames of each row; None = all S.
        blank: the blank class.

    Returns:
        One list of label ids per row.
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be (B, S, V), got shape {tuple(logits.shape)}")
    best = logits.argmax(dim=-1).cpu()
    lengths = [best.shape[1]] * best.shape[0] if frame_lengths is None else frame_lengths.tolist()
    out = []
    for row, length in zip(best, lengths):
        merged = torch.unique_consecutive(row[: int(length)])
        out.append(merged[merged.ne(blank)].tolist())
    return out


def ctc_beam_search(
    logits: Tensor, frame_lengths: Tensor | None = None, *, blank: int = 0, beam_size: int = 4
) -> list[list[int]]:
    """CTC prefix beam search: per row, the label sequence most likely summed over all its alignments, among the
    ``beam_size`` best prefixes kept after every frame (greedy decoding follows one best path instead).

    Each frame extends every kept prefix by a blank and by the ``beam_size`` most likely labels of that frame; a
    prefix's probability is kept split into "ends in a blank" and "ends in a label", so that a repeated label
    merges after the latter and starts a new label after the former. With a beam at least as large as the number
    of label sequences the result is the exact most likely labelling.

    Args:
        logits: (B, S, V) one distribution per frame (before softmax; log-probabilities work too).
        frame_lengths: (B,) real frames of each row; None = all S.
        blank: the blank class.
        beam_size: prefixes kept per frame (>= 1).

    Returns:
        One list of label ids per row.

    Raises:
        ValueError: logits not a floating (B, S, V) tensor, a blank outside [0, V), or a beam size under 1.
    """
    _check_frame_logits(logits)
    if not 0 <= blank < logits.shape[-1]:
        raise ValueError(f"blank must be a class in [0, {logits.shape[-1]}), got {blank}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    log_probs = logits.detach().float().log_softmax(dim=-1).cpu()
    lengths = [log_probs.shape[1]] * log_probs.shape[0] if frame_lengths is None else frame_lengths.tolist()
    labels_per_frame = min(beam_size, log_probs.shape[-1] - 1)
    return [_prefix_beam_search(row[: int(length)], blank, beam_size, labels_per_frame)
            for row, length in zip(log_probs, lengths)]  # fmt: skip


def _check_frame_logits(logits: Tensor) -> None:
    if logits.ndim != 3 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating tensor (B, S, V), got {logits.dtype} {tuple(logits.shape)}")


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for floats that may be -inf."""
    if a == -math.inf or b == -math.inf:
        return max(a, b)
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _grow(grown: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], ends_in_label: int, value: float) -> None:
    """Add probability ``exp(value)`` to ``prefix`` ending in a blank (0) or in a label (1)."""
    entry = grown.setdefault(prefix, [-math.inf, -math.inf])
    entry[ends_in_label] = _log_add(entry[ends_in_label], value)


def _prefix_beam_search(log_probs: Tensor, blank: int, beam_size: int, labels_per_frame: int) -> list[int]:
    """:func:`ctc_beam_search` of one row's real frames (S, V) of log-probabilities."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (ends in blank, in label)
    without_blank = log_probs.clone()
    without_blank[:, blank] = -math.inf
    tried = without_blank.topk(labels_per_frame, dim=-1).indices.tolist() if labels_per_frame else [[]] * len(log_probs)
    for frame, labels in zip(log_probs.tolist(), tried):
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (in_blank, in_label) in beams.items():
            total = _log_add(in_blank, in_label)
            _grow(grown, prefix, 0, total + frame[blank])
            for label in labels:
                if prefix and label == prefix[-1]:
                    _grow(grown, prefix, 1, in_label + frame[label])  # the same label again, merged
                    _grow(grown, (*prefix, label), 1, in_blank + frame[label])  # a new one after a blank
                else:
                    _grow(grown, (*prefix, label), 1, total + frame[label])
        kept = sorted(grown.items(), key=lambda item: _log_add(*item[1]), reverse=True)[:beam_size]
        beams = {prefix: (in_blank, in_label) for prefix, (in_blank, in_label) in kept}
    return list(max(beams.items(), key=lambda item: _log_add(*item[1]))[0])


# -- helpers -----------------------------------------------------------------------------------------------------


def _check_ids(ids: Tensor) -> None:
    if not isinstance(ids, Tensor):
        raise ValueError(f"ids must be a tensor, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor (int64), got {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"ids must have shape (B, T), got {tuple(ids.shape)}")


def _real_tokens(ids: Tensor, pad_id: int | None, attention_mask: Tensor | None) -> Tensor | None:
    """(B, T) bool True = real token, from the attention mask and/or the pad id; None when neither is given."""
    real = None
    if attention_mask is not None:
        if not isinstance(attention_mask, Tensor) or attention_mask.dtype != torch.bool:
            got = attention_mask.dtype if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
            raise ValueError(f"attention_mask must be a bool tensor (True = real token; use .bool()), got {got}")
        if attention_mask.shape != ids.shape:
            shapes = f"{tuple(attention_mask.shape)} vs {tuple(ids.shape)}"
            raise ValueError(f"attention_mask must have the shape of ids, got {shapes}")
        real = attention_mask
    if pad_id is not None:
        not_pad = ids.ne(pad_id)
        real = not_pad if real is None else real & not_pad
    return real


def _prepare_masking(ids, mask_id, vocab_size, special_ids, pad_id, attention_mask, mask_prob, replace_prob,
                     random_prob, random_ids, generator) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Validate the arguments shared by the masking functions.

    Returns:
        The random-replacement candidates (1-D int64) and the maskable positions (B, T) bool.
    """
    _check_ids(ids)
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    named = {"mask_id": mask_id, **({"pad_id": pad_id} if pad_id is not None else {})}
    named.update({f"special_ids[{i}]": value for i, value in enumerate(special_ids)})
    for name, value in named.items():
        if not 0 <= int(value) < vocab_size:
            raise ValueError(f"{name}={value} is outside the vocabulary [0, {vocab_size})")
    if ids.numel():
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= vocab_size:
            raise ValueError(f"ids must lie in [0, {vocab_size}), got values from {low} to {high}")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    for name, value in (("replace_prob", replace_prob), ("random_prob", random_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if replace_prob + random_prob > 1.0 + 1e-9:
        raise ValueError(f"replace_prob + random_prob must be <= 1 (the rest stays unchanged), got "
                         f"{replace_prob} + {random_prob}")  # fmt: skip
    if generator is not None and generator.device.type != ids.device.type:
        raise ValueError(f"generator is on {generator.device} but ids are on {ids.device}")
    if random_ids is not None:
        if isinstance(random_ids, Tensor):
            candidates = random_ids.to(ids.device)
        elif all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in random_ids):
            candidates = torch.tensor(list(random_ids), dtype=torch.long, device=ids.device)
        else:
            raise ValueError(f"random_ids must be a 1-D sequence of integer ids, got {random_ids!r}")
        if candidates.ndim != 1 or candidates.dtype.is_floating_point or candidates.dtype == torch.bool:
            raise ValueError(f"random_ids must be a 1-D sequence of integer ids, got {candidates.dtype} "
                             f"{tuple(candidates.shape)}")  # fmt: skip
        if candidates.numel() and (int(candidates.min()) < 0 or int(candidates.max()) >= vocab_size):
            raise ValueError(f"random_ids must lie in [0, {vocab_size})")
        candidates = candidates.long()
    else:
        keep = torch.ones(vocab_size, dtype=torch.bool, device=ids.device)
        keep[[int(i) for i in named.values()]] = False
        candidates = torch.arange(vocab_size, device=ids.device)[keep]
    if random_prob > 0 and candidates.numel() == 0:
        raise ValueError("no token is left to draw random replacements from (the vocabulary is all special ids or "
                         "random_ids is empty); set random_prob=0 or give random_ids")  # fmt: skip
    special = (*special_ids, mask_id)
    return candidates, maskable_positions(ids, special_ids=special, pad_id=pad_id, attention_mask=attention_mask)


def _uniform(ids: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(ids.shape, generator=generator, device=ids.device)


def _shift(x: Tensor, offset: int, fill: int | bool) -> Tensor:
    """``out[:, i] = x[:, i - offset]`` where that index exists, ``fill`` elsewhere."""
    out = torch.full_like(x, fill)
    t = x.shape[1]
    if 0 <= offset < t:
        out[:, offset:] = x[:, : t - offset]
    elif -t < offset < 0:
        out[:, :offset] = x[:, -offset:]
    return out


def _corrupt(ids: Tensor, selected: Tensor, mask_id: int, candidates: Tensor, replace_prob: float, random_prob: float,
             per_span: bool, generator: torch.Generator | None) -> MaskedBatch:  # fmt: skip
    """Replace selected tokens (80/10/10 by default) and label them; the random draws are the same for every rate."""
    action = _uniform(ids, generator)
    if per_span:  # every token of a run of selected tokens takes the draw of the run's first token
        run_start = selected & ~_shift(selected, 1, fill=False)
        position = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        first = torch.where(run_start, position, 0).cummax(dim=1).values
        action = action.gather(1, first)
    to_mask = selected & action.lt(replace_prob)
    to_random = selected & action.ge(replace_prob) & action.lt(replace_prob + random_prob)
    inputs = ids.masked_fill(to_mask, mask_id)
    if candidates.numel():
        drawn = candidates[torch.randint(candidates.numel(), ids.shape, generator=generator, device=ids.device)]
        inputs = torch.where(to_random, drawn.to(ids.dtype), inputs)
    labels = ids.long().masked_fill(~selected, IGNORE_INDEX)
    return MaskedBatch(inputs, labels)
