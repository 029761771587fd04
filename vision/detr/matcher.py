"""DETR's Hungarian matcher: the one-to-one assignment of predictions to ground-truth objects.

Carion et al. 2020, "End-to-End Object Detection with Transformers", section 3.1 (reference code
facebookresearch/detr ``models/matcher.py``). The cost of matching query i to object j is

    class_weight * (-p_i(class_j)) + l1_weight * |box_i - box_j|_1 + giou_weight * (-GIoU(box_i, box_j))

with boxes in normalised cxcywh (the L1 term) and their corners (the GIoU term). One cost matrix is
built for the whole batch (every query against every object of every image, a single matrix product's
worth of work) and split per image; ``scipy.optimize.linear_sum_assignment`` solves each image's
rectangular assignment. Each object gets exactly one query; the other queries are "no object".

With ``sigmoid=True`` (models trained with the focal loss, as in Deformable DETR, Zhu et al. 2021) the
class cost is the focal cost of the object's class, ``alpha (1 - p)^gamma (-log p) -
(1 - alpha) p^gamma (-log(1 - p))`` with ``p = sigmoid(logit)``, instead of ``-softmax``.

Shape legend: B images, Q queries, C classes (+1 for no object), G objects of one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["HungarianMatcher", "Targets"]


class Targets(NamedTuple):
    """One image's objects: class indices (G,) and normalised cxcywh boxes (G, 4).

    A named tuple, so that the engine's ``to_device`` moves it with the batch.
    """

    labels: Tensor
    boxes: Tensor


@dataclass
class HungarianMatcher:
    """Match each image's objects to queries at the lowest total cost (DETR's costs by default)."""

    class_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    sigmoid: bool = False  # class cost from per-class sigmoids (focal loss) instead of the softmax
    focal_alpha: float = 0.25  # the focal cost's alpha (with sigmoid)
    focal_gamma: float = 2.0  # the focal cost's gamma (with sigmoid)

    def __post_init__(self) -> None:
        if min(self.class_weight, self.l1_weight, self.giou_weight) < 0 or not (
            self.class_weight or self.l1_weight or self.giou_weight
        ):
            raise ValueError("matcher weights must be non-negative and not all zero")

    def cost_matrix(self, logits: Tensor, boxes: Tensor, targets: Sequence[Targets]) -> Tensor:
        """The batch's cost matrix (B * Q, total objects): every query against every image's objects."""
        logits = logits.flatten(0, 1).float()  # (B*Q, C+1)
        predicted = boxes.flatten(0, 1).float()  # (B*Q, 4)
        labels = torch.cat([t.labels for t in targets]).long()
        wanted = torch.cat([t.boxes for t in targets]).float()  # (total, 4)
        if self.sigmoid:
            p = logits[:, labels].sigmoid()
            alpha, gamma = self.focal_alpha, self.focal_gamma
            positive = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
            negative = (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
            cost_class = positive - negative
        else:
            cost_class = -logits.softmax(-1)[:, labels]
        cost_l1 = torch.cdist(predicted, wanted, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(wanted))
        return self.class_weight * cost_class + self.l1_weight * cost_l1 + self.giou_weight * cost_giou

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, targets: Sequence[Targets]) -> list[tuple[Tensor, Tensor]]:
        """Per image, ``(query indices, object indices)`` of the matched pairs, both (min(Q, G),) int64.

        Args:
            logits: class logits (B, Q, C+1), the last class being "no object".
            boxes: predicted normalised cxcywh boxes (B, Q, 4).
            targets: B images' objects.

        Raises:
            ValueError: the batch sizes disagree, or an image has more objects than there are queries.
        """
        from scipy.optimize import linear_sum_assignment

        b, q = logits.shape[:2]
        if len(targets) != b or boxes.shape[:2] != (b, q):
            raise ValueError(f"{len(targets)} targets for logits {tuple(logits.shape)} and boxes {tuple(boxes.shape)}")
        counts = [len(t.labels) for t in targets]
        crowded = [i for i, n in enumerate(counts) if n > q]
        if crowded:
            raise ValueError(
                f"image {crowded[0]} has {counts[crowded[0]]} objects but the model has only {q} queries; "
                "raise num_queries above the most objects in one image"
            )
        empty = torch.empty(0, dtype=torch.int64)
        if sum(counts) == 0:
            return [(empty, empty) for _ in range(b)]
        cost = self.cost_matrix(logits, boxes, targets).view(b, q, -1).cpu()  # (B, Q, total)
        out = []
        for i, block in enumerate(cost.split(counts, dim=-1)):
            if counts[i] == 0:
                out.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(block[i].numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out
