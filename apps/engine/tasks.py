"""What the engine asks of a task: a training loss and streaming validation metrics.

The loop knows nothing else about a model. A task is any object with the three methods of
:class:`TrainingTask`; :class:`ClassificationTask` covers ``(inputs, labels)`` batches with
cross-entropy and accuracy (torchmetrics), and every domain can add its own.

Shape legend: B batch, C classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from torchmetrics import Metric

__all__ = ["ClassificationTask", "TrainingTask", "logits_of", "plain_value", "to_device"]


class TrainingTask(Protocol):
    """The three things the engine calls."""

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

    Args:
        num_classes: C.
        label_smoothing: cross-entropy label smoothing in training.
        batch_transform: applied to ``(inputs, labels)`` in training only, e.g. mixup/cutmix
            returning soft labels (B, C); it runs in the training process, so its randomness is
            checkpointed with the RNG state.
        detailed: also per-class accuracy and the confusion matrix (for ``eval`` reports).
    """

    num_classes: int
    label_smoothing: float = 0.0
    batch_transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
    detailed: bool = False

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        inputs, labels = batch[0], batch[1]
        if self.batch_transform is not None:
            inputs, labels = self.batch_transform(inputs, labels)
        logits = logits_of(model(inputs)).float()  # (B, C)
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
        return metrics

    def update_metrics(self, metrics: dict[str, Metric], model: nn.Module, batch: Any) -> None:
        inputs, labels = batch[0], batch[1]
        logits = logits_of(model(inputs)).float()  # (B, C)
        metrics["loss"].update(F.cross_entropy(logits, labels, reduction="none"))
        predictions = logits.argmax(dim=-1)
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(predictions, labels)


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
