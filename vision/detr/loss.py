"""DETR's set loss: match predictions to objects one-to-one, then score the matched pairs.

Carion et al. 2020, "End-to-End Object Detection with Transformers", section 3.1 and appendix A.2
(reference code facebookresearch/detr ``models/detr.py``, ``SetCriterion``). For each decoder
layer's predictions (the last and, as auxiliary losses, every earlier one) the Hungarian matcher
pairs queries with objects; then

- the class loss is the cross-entropy of every query against its object's class or "no object",
  with the no-object class down-weighted (0.1) because most queries are empty; or, with
  ``focal=True``, the sigmoid focal loss of Lin et al. 2017 per class (Deformable DETR's choice,
  which helps on small data sets), summed and divided by the number of objects;
- the box losses are the L1 distance of the matched boxes (normalised cxcywh) and 1 - their
  generalised IoU, summed and divided by the number of objects in the batch (across all
  processes under DDP, so every process weighs a box equally).

The total is ``class_weight * class + l1_weight * L1 + giou_weight * GIoU`` summed over the layers.
The class error (the percentage of matched queries whose top class is wrong) is logged as DETR
does: it is the first thing to watch on a new data set.

Shape legend: B images, Q queries, K classes (K + 1 logits with "no object"), N matched pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from .matcher import HungarianMatcher, Targets
from .model import DetrOutput

__all__ = ["SetCriterion"]

TERMS = ("loss_class", "loss_l1", "loss_giou")


class SetCriterion(nn.Module):
    """DETR's loss over a batch's predictions and objects.

    Args:
        num_classes: K, object classes (labels are 0 .. K - 1).
        class_weight: weight of the class loss (and of the class cost in matching).
        l1_weight: weight of the L1 box loss (and cost).
        giou_weight: weight of the GIoU loss (and cost).
        no_object_weight: cross-entropy weight of the "no object" class (DETR's eos_coef).
        focal: per-class sigmoid focal loss instead of the softmax cross-entropy.
        focal_alpha: the focal loss's alpha.
        focal_gamma: the focal loss's gamma.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        class_weight: float = 1.0,
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        no_object_weight: float = 0.1,
        focal: bool = False,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= no_object_weight <= 1.0:
            raise ValueError(f"no_object_weight must be in [0, 1], got {no_object_weight}")
        self.num_classes = num_classes
        self.weights = {"loss_class": class_weight, "loss_l1": l1_weight, "loss_giou": giou_weight}
        self.matcher = HungarianMatcher(
            class_weight, l1_weight, giou_weight, sigmoid=focal, focal_alpha=focal_alpha, focal_gamma=focal_gamma
        )
        self.focal, self.focal_alpha, self.focal_gamma = focal, focal_alpha, focal_gamma
        class_weights = torch.ones(num_classes + 1)
        class_weights[-1] = no_object_weight
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, output: DetrOutput, targets: Sequence[Targets]) -> dict[str, Tensor]:
        """The losses of the last layer (``loss_class``, ``loss_l1``, ``loss_giou``), those of each earlier
        layer (suffixed ``_0``, ``_1``, ...), ``class_error`` (percent) and their weighted sum ``loss``.

        Raises:
            ValueError: a label is outside 0 .. K - 1, or the logits do not have K + 1 classes.
        """
        self._check(output.logits, targets)
        num_boxes = self.num_boxes(targets, output.logits.device)
        losses = self.layer_losses(output.logits, output.boxes, targets, num_boxes)
        total = sum(self.weights[name] * losses[name] for name in TERMS)
        for i, (logits, boxes) in enumerate(output.aux):
            aux = self.layer_losses(logits, boxes, targets, num_boxes)
            total = total + sum(self.weights[name] * aux[name] for name in TERMS)
            losses.update({f"{name}_{i}": aux[name] for name in TERMS})
        losses["loss"] = total
        return losses

    def _check(self, logits: Tensor, targets: Sequence[Targets]) -> None:
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"the model predicts {logits.shape[-1] - 1} classes (+ no object) but the loss was built for "
                f"{self.num_classes}; build both from the same class list"
            )
        for i, target in enumerate(targets):
            bad = target.labels[(target.labels < 0) | (target.labels >= self.num_classes)]
            if bad.numel():
                raise ValueError(
                    f"image {i} has label {int(bad[0])} outside 0..{self.num_classes - 1}; "
                    "labels are class indices into the model's class list"
                )

    @staticmethod
    def num_boxes(targets: Sequence[Targets], device: torch.device) -> Tensor:
        """Objects per process in the whole (distributed) batch, at least 1: the box losses' divisor."""
        count = torch.tensor(float(sum(len(t.labels) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return count.clamp(min=1.0)

    def layer_losses(
        self, logits: Tensor, boxes: Tensor, targets: Sequence[Targets], num_boxes: Tensor
    ) -> dict[str, Tensor]:
        """One layer's class, L1 and GIoU losses and its class error."""
        indices = self.matcher(logits, boxes, targets)
        device = logits.device
        image = torch.cat([torch.full_like(query, i) for i, (query, _) in enumerate(indices)]).to(device)  # (N,)
        query = torch.cat([query for query, _ in indices]).to(device)
        labels = torch.cat([t.labels[obj.to(t.labels.device)] for t, (_, obj) in zip(targets, indices)]).to(device)
        wanted = torch.cat([t.boxes[obj.to(t.boxes.device)] for t, (_, obj) in zip(targets, indices)]).to(device)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=device)  # (B, Q)
        classes[image, query] = labels.long()
        logits = logits.float()
        if self.focal:
            onehot = F.one_hot(classes, self.num_classes + 1)[..., :-1].float()  # (B, Q, K); no object = all zero
            focal = sigmoid_focal_loss(logits[..., :-1], onehot, self.focal_alpha, self.focal_gamma, reduction="sum")
            loss_class = focal / num_boxes
        else:
            loss_class = F.cross_entropy(logits.transpose(1, 2), classes, weight=self.class_weights)
        matched = boxes[image, query].float()  # (N, 4)
        wanted = wanted.float()
        loss_l1 = F.l1_loss(matched, wanted, reduction="sum") / num_boxes
        giou = generalized_box_iou(box_cxcywh_to_xyxy(matched), box_cxcywh_to_xyxy(wanted)).diagonal()
        loss_giou = (1 - giou).sum() / num_boxes
        with torch.no_grad():
            top = logits[image, query, :-1].argmax(-1) if self.focal else logits[image, query].argmax(-1)
            wrong = (top != labels).float()
            class_error = 100 * wrong.mean() if len(wrong) else logits.new_zeros(())
        return {"loss_class": loss_class, "loss_l1": loss_l1, "loss_giou": loss_giou, "class_error": class_error}
