"""What the engine asks of a task: a training loss and streaming validation metrics.

The loop knows nothing else about a model. A task is any object with the three methods of
:class:`TrainingTask`; :class:`ClassificationTask` covers ``(inputs, labels)`` batches with
cross-entropy and accuracy (torchmetrics), and every domain can add its own.

:class:`CTCTask` trains any model that emits one distribution per frame against label sequences (wav2vec 2.0)
and watches for the classic CTC failure, a model that outputs only blanks.

Token-level tasks share :class:`TokenCrossEntropyTask` (one loss and metric path over the labelled
tokens, see :mod:`polyformer.core.objectives`): :class:`MaskedLMTask` (BERT-style), :class:`CausalLMTask`
(next-token prediction) and :class:`Seq2SeqTask` (teacher forcing); a new batch layout only needs a
subclass with its own ``logits_and_labels``.

Shape legend: B batch, C classes, T tokens, S source tokens, V vocabulary.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyformer.core.objectives import (
    IGNORE_INDEX,
    MaskedBatch,
    ctc_greedy_decode,
    ctc_loss,
    next_token_targets,
    token_cross_entropy,
)

if TYPE_CHECKING:
    from torchmetrics import Metric

__all__ = [
    "CTCTask",
    "CausalLMTask",
    "ClassificationTask",
    "MaskedLMTask",
    "Seq2SeqTask",
    "TokenCrossEntropyTask",
    "TrainingHealthError",
    "TrainingTask",
    "logits_of",
    "plain_value",
    "to_device",
]


class TrainingTask(Protocol):
    """The three things the engine calls.

    Three more are optional: ``on_start(step)`` is called once before the first optimizer step
    with the steps already done (0, or a resumed run's; for schedules a task keeps itself, such as
    wav2vec 2.0's Gumbel temperature); ``step_values() -> dict[str, float]``, called after every
    optimizer step, gives numbers the training log averages and shows with the loss (DETR's class
    error); ``on_eval(step, metrics)`` is called with every validation result (to warn when
    training is stuck).
    """

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Mean training loss of one micro-batch (a scalar)."""
        ...

    def make_metrics(self) -> dict[str, Metric]:
        """Fresh torchmetrics objects, one per reported name."""
        ...

    def update_metrics(self, metrics: dict[str, Metric], model: nn.Module, batch: Any) -> None:
        """Feed one evaluation batch into ``metrics``."""
        ...


def logits_of(output: Any) -> Tensor:
    """Logits from a model output: the tensor itself or its ``logits`` attribute."""
    return output.logits if hasattr(output, "logits") else output


@dataclass
class ClassificationTask:
    """Cross-entropy on ``(inputs, labels)`` batches; accuracy and loss as validation metrics.

    ``inputs`` is a tensor (``model(inputs)``) or a dict of them (``model(**inputs)``, e.g. a text
    classifier's ``input_ids`` and ``attention_mask``).

    Args:
        num_classes: C.
        label_smoothing: cross-entropy label smoothing in training.
        batch_transform: applied to ``(inputs, labels)`` in training only, e.g. mixup/cutmix
            returning soft labels (B, C); it runs in the training process, so its randomness is
            checkpointed with the RNG state.
        detailed: also per-class accuracy and the confusion matrix (for ``eval`` reports).
        scores: also macro F1, Matthews correlation (``mcc``) and macro one-vs-rest AUROC (the
            DNA benchmarks' metrics).
    """

    default_best: ClassVar[tuple[str, str]] = ("accuracy", "max")  # picks best_model/ unless the config names one
    num_classes: int
    label_smoothing: float = 0.0
    batch_transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
    detailed: bool = False
    scores: bool = False

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        inputs, labels = batch[0], batch[1]
        if self.batch_transform is not None:
            inputs, labels = self.batch_transform(inputs, labels)
        logits = _classify(model, inputs)  # (B, C)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def make_metrics(self) -> dict[str, Metric]:
        from torchmetrics import MeanMetric  # imported on first use: torchmetrics takes seconds to import
        from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

        metrics: dict[str, Metric] = {
            "accuracy": MulticlassAccuracy(self.num_classes, average="micro"),
            "loss": MeanMetric(),
        }
        if self.detailed:
            metrics["per_class_accuracy"] = MulticlassAccuracy(self.num_classes, average=None)
            metrics["confusion_matrix"] = MulticlassConfusionMatrix(self.num_classes)
        if self.scores:
            from torchmetrics.classification import MulticlassAUROC, MulticlassF1Score, MulticlassMatthewsCorrCoef

            metrics["f1"] = MulticlassF1Score(self.num_classes, average="macro")
            metrics["mcc"] = MulticlassMatthewsCorrCoef(self.num_classes)
            metrics["auroc"] = MulticlassAUROC(self.num_classes, average="macro")
        return metrics

    def update_metrics(self, metrics: dict[str, Metric], model: nn.Module, batch: Any) -> None:
        inputs, labels = batch[0], batch[1]
        logits = _classify(model, inputs)  # (B, C)
        metrics["loss"].update(F.cross_entropy(logits, labels, reduction="none"))
        predictions = logits.argmax(dim=-1)
        for name, metric in metrics.items():
            if name == "auroc":
                metric.update(logits.float().softmax(dim=-1), labels)
            elif name != "loss":
                metric.update(predictions, labels)


@dataclass
class TokenCrossEntropyTask:
    """Cross-entropy over the labelled tokens of a sequence batch; loss, token accuracy and perplexity as metrics.

    Subclasses say how a batch becomes ``(logits (B, T, V), labels (B, T))`` in :meth:`logits_and_labels`; labels
    of :data:`~polyformer.core.objectives.IGNORE_INDEX` are not predicted. The training loss is
    :func:`~polyformer.core.objectives.token_cross_entropy` (the mean over labelled tokens of the micro-batch; 0
    with a gradient when none is labelled). Validation metrics are token-weighted over the whole data set:
    ``loss`` (without label smoothing), ``accuracy`` (argmax = label) and, with ``perplexity``, ``perplexity``
    = exp(loss).

    Args:
        label_smoothing: cross-entropy label smoothing in training.
        perplexity: also report perplexity.
    """

    label_smoothing: float = 0.0
    perplexity: bool = True
    default_best: ClassVar[tuple[str, str]] = ("loss", "min")

    def logits_and_labels(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        """Run ``model`` on ``batch``: logits (B, T, V) and labels (B, T)."""
        raise NotImplementedError(f"{type(self).__name__} must define logits_and_labels(model, batch)")

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        logits, labels = self.logits_and_labels(model, batch)
        return token_cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def make_metrics(self) -> dict[str, Metric]:
        from torchmetrics import MeanMetric  # imported on first use: torchmetrics takes seconds to import

        metrics: dict[str, Metric] = {"accuracy": MeanMetric(), "loss": MeanMetric()}
        if self.perplexity:
            metrics["perplexity"] = _perplexity_metric_class()()
        return metrics

    def update_metrics(self, metrics: dict[str, Metric], model: nn.Module, batch: Any) -> None:
        logits, labels = self.logits_and_labels(model, batch)
        labelled = labels.ne(IGNORE_INDEX)
        logits, labels = logits[labelled].float(), labels[labelled].long()  # (N, V), (N,)
        losses = F.cross_entropy(logits, labels, reduction="none")
        metrics["loss"].update(losses)
        metrics["accuracy"].update(logits.argmax(dim=-1).eq(labels).float())
        if "perplexity" in metrics:
            metrics["perplexity"].update(losses)


@dataclass
class MaskedLMTask(TokenCrossEntropyTask):
    """Masked language modelling: ``model(input_ids, attention_mask) -> logits (B, T, V)``, labels per token.

    Batches are a dict with ``input_ids`` (B, T), optional ``attention_mask`` (B, T) bool and ``labels`` (B, T)
    (IGNORE_INDEX where not predicted, as :func:`~polyformer.core.objectives.mask_tokens` makes them), or a tuple
    ``(input_ids, labels)`` / ``(input_ids, attention_mask, labels)``. The model gets ``attention_mask`` only when
    there is one.

    With ``mask_fn`` the task masks the batch itself (dynamic masking, as RoBERTa): batches then carry no labels, a
    tuple is ``(input_ids,)`` or ``(input_ids, attention_mask)`` (or a bare tensor), and
    ``mask_fn(input_ids, attention_mask=mask)`` returns a :class:`~polyformer.core.objectives.MaskedBatch`, e.g.
    ``functools.partial(mask_tokens, mask_id=4, vocab_size=V, special_ids=(1, 2), pad_id=0)``. It runs on the CPU
    (ids are small) with torch's global CPU generator, on any device: that generator is checkpointed with the RNG
    state in training and seeded the same way at every evaluation, so evaluation masks are the same each time.

    Args:
        mask_fn: masks unlabelled batches; None = batches carry labels.
        pad_id: derive a missing ``attention_mask`` as ``input_ids != pad_id``; None = leave it out.
    """

    mask_fn: Callable[..., MaskedBatch] | None = None
    pad_id: int | None = None

    def logits_and_labels(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        if self.mask_fn is None:
            ids, mask, labels = _fields(batch, ("input_ids", "attention_mask", "labels"), ("labels",), "MaskedLMTask")
        else:
            ids, mask = _fields(batch, ("input_ids", "attention_mask"), (), "MaskedLMTask with mask_fn")
            labels = None
        if mask is None and self.pad_id is not None:
            mask = ids.ne(self.pad_id)
        if labels is None:  # masked on the CPU: its generator is checkpointed and re-seeded for every evaluation
            cpu_mask = None if mask is None else mask.cpu()
            masked_ids, labels = self.mask_fn(ids.cpu(), attention_mask=cpu_mask)
            ids, labels = masked_ids.to(ids.device), labels.to(ids.device)
        if getattr(getattr(model, "module", model), "accepts_mlm_labels", False):
            # The model projects only the labelled positions onto the vocabulary: (N, V) and their N labels.
            logits = model(ids, mask, labels=labels) if mask is not None else model(ids, labels=labels)
            return logits_of(logits), labels[labels.ne(IGNORE_INDEX)]
        return _call(model, ids, mask), labels


@dataclass
class CausalLMTask(TokenCrossEntropyTask):
    """Causal language modelling: predict token t+1 from tokens up to t (``model(inputs, attention_mask)``).

    Batches are ``input_ids`` (B, T) as a tensor, a tuple ``(input_ids,)`` / ``(input_ids, attention_mask)``, or a
    dict with ``input_ids`` and optional ``attention_mask`` (bool, True = real token). The task shifts them with
    :func:`~polyformer.core.objectives.next_token_targets`: the model reads ``input_ids[:, :-1]`` (with the
    matching mask when there is padding information) and targets that are padding, or follow padding, are ignored.
    Fits :class:`~polyformer.core.DecoderOnlyTransformer`.

    Args:
        pad_id: padding id (also marks padding without an ``attention_mask``); None = padding only via the mask.
    """

    pad_id: int | None = None

    def logits_and_labels(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        ids, mask = _fields(batch, ("input_ids", "attention_mask"), (), "CausalLMTask")
        inputs, targets, input_mask = next_token_targets(ids, attention_mask=mask, pad_id=self.pad_id)
        return _call(model, inputs, input_mask), targets


@dataclass
class Seq2SeqTask(TokenCrossEntropyTask):
    """Sequence-to-sequence with teacher forcing: ``model(src, tgt_in) -> logits (B, T, V)`` predicts ``tgt_out``.

    Batches are ``(src, tgt)`` or ``(src, tgt_in, tgt_out)``, or a dict with ``src`` and either ``tgt`` or
    ``tgt_in`` and ``tgt_out``, plus an optional ``src_mask`` (B, S) bool passed as the model's third argument.
    A ``tgt`` holds the whole target with its start token (BOS y1 ... EOS, right-padded): it is shifted with
    :func:`~polyformer.core.objectives.next_token_targets`. In ``tgt_out``, IGNORE_INDEX and ``pad_id`` are not
    predicted. Fits :class:`~polyformer.core.EncoderDecoderTransformer` (which masks source padding itself).

    Args:
        pad_id: target padding id; None = only IGNORE_INDEX labels are skipped (and ``tgt`` must then be unpadded).
    """

    pad_id: int | None = None

    def logits_and_labels(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Mapping) and "src" in batch and ("tgt" in batch or {"tgt_in", "tgt_out"} <= batch.keys()):
            src, src_mask = batch["src"], batch.get("src_mask")
            parts = (batch["tgt"],) if "tgt" in batch else (batch["tgt_in"], batch["tgt_out"])
        elif isinstance(batch, list | tuple) and len(batch) in (2, 3):
            src, src_mask, parts = batch[0], None, tuple(batch[1:])
        else:
            raise ValueError("Seq2SeqTask batches are (src, tgt), (src, tgt_in, tgt_out) or a dict with src and tgt "
                             f"or tgt_in/tgt_out; got {_describe(batch)}")  # fmt: skip
        if len(parts) == 1:
            tgt_in, labels, _ = next_token_targets(parts[0], pad_id=self.pad_id)
        else:
            tgt_in, labels = parts[0], parts[1].long()
            if self.pad_id is not None:
                labels = labels.masked_fill(labels.eq(self.pad_id), IGNORE_INDEX)
        args = (src, tgt_in) if src_mask is None else (src, tgt_in, src_mask)
        return logits_of(model(*args)), labels


@functools.cache
def _perplexity_metric_class() -> type:
    from torchmetrics import MeanMetric

    class Perplexity(MeanMetric):
        """exp of the token-weighted mean cross-entropy."""

        def compute(self) -> Tensor:
            return super().compute().exp()

    return Perplexity


def _fields(batch: Any, names: tuple[str, ...], required: tuple[str, ...], who: str) -> tuple[Tensor | None, ...]:
    """Tensors ``names`` (the first always required) from a dict, a tuple in that order, or a bare tensor."""
    if isinstance(batch, Tensor):
        batch = (batch,)
    if isinstance(batch, Mapping):
        missing = [n for n in (names[0], *required) if n not in batch]
        if missing or any(key not in names for key in batch):
            raise ValueError(f"{who} batch dicts need {[names[0], *required]} and may have {list(names)}; "
                             f"got keys {sorted(batch)}")  # fmt: skip
        return tuple(batch.get(name) for name in names)
    if isinstance(batch, list | tuple):
        optional = [n for n in names if n != names[0] and n not in required]
        if len(batch) == len(names):
            return tuple(batch)
        if len(batch) == len(names) - len(optional):
            by_name = dict(zip([n for n in names if n not in optional], batch))
            return tuple(by_name.get(name) for name in names)
    order = ", ".join(names)
    raise ValueError(f"{who} batches are a dict or a tuple ({order}), optional ones left out; got {_describe(batch)}")


def _classify(model: nn.Module, inputs: Any) -> Tensor:
    """Float logits (B, C): ``model(inputs)``, or ``model(**inputs)`` for a dict (e.g. token ids and their mask)."""
    return logits_of(model(**inputs) if isinstance(inputs, Mapping) else model(inputs)).float()


def _call(model: nn.Module, ids: Tensor, mask: Tensor | None) -> Tensor:
    return logits_of(model(ids) if mask is None else model(ids, mask))


def _describe(batch: Any) -> str:
    if isinstance(batch, Mapping):
        return f"a dict with keys {sorted(batch)}"
    if isinstance(batch, list | tuple):
        return f"a {type(batch).__name__} of {len(batch)}"
    return type(batch).__name__


def plain_value(value: Tensor) -> float | list:
    """A computed metric as a float (scalars) or nested lists."""
    value = value.detach().cpu()
    return value.item() if value.ndim == 0 else value.tolist()


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        moved = [to_device(value, device) for value in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


class TrainingHealthError(ValueError):
    """A task's health check stopped the run (collapsed codebook, all-blank CTC output ...); says what to change."""


@dataclass
class CTCTask:
    """CTC on ``(inputs, input_mask, labels, ...)`` batches; ``model(inputs, input_mask)`` returns frame logits
    (B, S, V) and each row's real frames (B,), labels are (B, T) with ``IGNORE_INDEX`` padding.

    Validation reports the loss and ``empty_outputs``, the fraction of clips whose greedy read-out is empty.
    Every CTC model starts by emitting only blanks; one that still does at ``warn_after`` steps or later is
    stuck, and :meth:`on_eval` says so (``warn``) or, with ``stop_when_blank``, stops the run with
    :class:`TrainingHealthError`. ``step_values`` logs ``blank_frames``, the share of training frames whose best
    class is the blank.

    Args:
        blank: the blank class.
        warn: where warnings go (None = nowhere).
        warn_after: first step at which an all-blank validation is a problem.
        stop_when_blank: raise instead of warning.
        reduction: ``"mean"`` (per label, then per clip) or ``"sum"`` (see :func:`~polyformer.core.ctc_loss`).
    """

    default_best: ClassVar[tuple[str, str]] = ("loss", "min")
    blank: int = 0
    warn: Callable[[str], None] | None = None
    warn_after: int = 0
    stop_when_blank: bool = False
    reduction: str = "mean"

    def __post_init__(self) -> None:
        self._blank_frames = 0.0
        self._warned = False

    def logits(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        return model(batch[0], batch[1])

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        logits, lengths = self.logits(model, batch)
        with torch.no_grad():
            real = torch.arange(logits.shape[1], device=logits.device)[None, :] < lengths[:, None]
            self._blank_frames = float(logits.argmax(dim=-1).eq(self.blank)[real].float().mean())
        loss = ctc_loss(logits, lengths, batch[2], blank=self.blank, reduction=self.reduction)
        return loss / len(lengths) if self.reduction == "sum" else loss

    def step_values(self) -> dict[str, float]:
        return {"blank_frames": self._blank_frames}

    def make_metrics(self) -> dict[str, Metric]:
        from torchmetrics import MeanMetric

        return {"loss": MeanMetric(), "empty_outputs": MeanMetric()}

    def update_metrics(self, metrics: dict[str, Metric], model: nn.Module, batch: Any) -> None:
        logits, lengths = self.logits(model, batch)
        losses = ctc_loss(logits, lengths, batch[2], blank=self.blank, reduction="none")
        if self.reduction == "mean":
            losses = losses / batch[2].ne(IGNORE_INDEX).sum(dim=1).clamp(min=1)
        metrics["loss"].update(losses)
        decoded = self.decode(logits, lengths)
        metrics["empty_outputs"].update(torch.tensor([float(not ids) for ids in decoded]))
        self.update_text_metrics(metrics, decoded, batch)

    def decode(self, logits: Tensor, lengths: Tensor) -> list[list[int]]:
        """Greedy read-out of each row (ids, repeats merged, blanks dropped)."""
        return ctc_greedy_decode(logits, lengths, blank=self.blank)

    def update_text_metrics(self, metrics: dict[str, Metric], decoded: list[list[int]], batch: Any) -> None:
        """Hook for subclasses that turn ids into text (WER, CER)."""

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None:
        """Warn (or stop) when every validation clip decodes to blanks only, at or after ``warn_after`` steps."""
        if step < self.warn_after or float(metrics.get("empty_outputs", 0.0)) < 0.999:
            return
        message = (
            f"every validation clip decodes to blanks only at step {step} (the model has not left CTC's all-blank "
            "phase): train longer, check the learning rate (too high diverges to blanks, too low never leaves them), "
            "freeze the feature encoder at first, and check that the labels are the transcriptions in the vocabulary"
        )
        if self.stop_when_blank:
            raise TrainingHealthError(f"stopped: {message}")
        if self.warn is not None and not self._warned:
            self.warn(f"warning: {message}")
            self._warned = True
