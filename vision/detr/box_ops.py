"""Box operations for detection, as pure functions on (..., 4) tensors.

Formats: ``xyxy`` = (x0, y0, x1, y1) corners; ``cxcywh`` = (centre x, centre y, width, height), the
format DETR predicts (normalised to [0, 1] by the image size). IoU and generalised IoU (Rezatofighi
et al. 2019, "Generalized Intersection over Union") are pairwise: N boxes against M boxes give an
(N, M) matrix, as DETR's matcher needs them (facebookresearch/detr ``util/box_ops.py``; checked
against ``torchvision.ops`` in the tests). Degenerate boxes (zero area) give IoU 0, never NaN.

Shape legend: N and M boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_area", "box_cxcywh_to_xyxy", "box_iou", "box_xyxy_to_cxcywh", "check_boxes_xyxy", "generalized_box_iou"]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre-size boxes -> corner boxes."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) corner boxes -> centre-size boxes."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) corner boxes -> (...) areas (negative extents count as zero)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _intersection_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas, each (N, M)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU (N, M) of corner boxes a (N, 4) and b (M, 4); 0 where the union is empty."""
    inter, union = _intersection_union(a, b)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise generalised IoU (N, M) in [-1, 1]: IoU minus the share of the enclosing box that neither covers."""
    inter, union = _intersection_union(a, b)
    tiny = torch.finfo(union.dtype).tiny
    iou = torch.where(union > 0, inter / union.clamp(min=tiny), torch.zeros_like(union))
    top_left = torch.minimum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    enclosing = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    penalty = torch.where(enclosing > 0, (enclosing - union) / enclosing.clamp(min=tiny), torch.zeros_like(union))
    return iou - penalty


def check_boxes_xyxy(boxes: Tensor, where: str = "boxes") -> None:
    """Raise ValueError unless every corner box (N, 4) is finite with x1 > x0 and y1 > y0.

    Args:
        boxes: (N, 4) corner boxes.
        where: names the boxes in the message (a file and annotation, for example).
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{where}: boxes must be (N, 4), got {tuple(boxes.shape)}")
    bad = ~torch.isfinite(boxes).all(dim=-1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        index = int(bad.nonzero()[0])
        raise ValueError(
            f"{where}: box {index} {boxes[index].tolist()} is not (x0, y0, x1, y1) with x1 > x0 and y1 > y0"
        )
