"""From DETR's raw predictions to detections: scored, labelled boxes in pixels, and pictures of them.

A query's score is its most likely real class's probability: the softmax over the K + 1 classes
without the "no object" column (DETR's ``PostProcess``), or the per-class sigmoid for models
trained with the focal loss. Boxes go from normalised (cx, cy, w, h) to pixel (xmin, ymin, xmax,
ymax) of the image size given. DETR predicts each object once, so no non-maximum suppression is
needed; a score threshold keeps the confident queries.

Shape legend: B images, Q queries, K classes, N detections of one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw
from torch import Tensor

from .box_ops import box_cxcywh_to_xyxy
from .model import DetrOutput

__all__ = ["Detections", "class_scores", "detections_from_output", "draw_detections"]

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230))


@dataclass
class Detections:
    """One image's detections: pixel boxes (N, 4) xyxy, scores (N,) and class indices (N,), best first."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def class_scores(logits: Tensor, sigmoid: bool = False) -> tuple[Tensor, Tensor]:
    """The best real class of every query and its probability: (B, Q) scores, (B, Q) labels."""
    logits = logits.float()
    probabilities = logits[..., :-1].sigmoid() if sigmoid else logits.softmax(-1)[..., :-1]
    return probabilities.max(-1)


def detections_from_output(
    output: DetrOutput, sizes: Sequence[tuple[int, int]], threshold: float = 0.0, sigmoid: bool = False
) -> list[Detections]:
    """Each image's detections with a score above ``threshold``.

    Args:
        output: the model's predictions for B images.
        sizes: each image's (height, width) in the pixels the boxes should be in.
        threshold: keep detections scoring above this.
        sigmoid: the model scores classes with sigmoids (focal loss), not the softmax.
    """
    scores, labels = class_scores(output.logits, sigmoid)
    boxes = box_cxcywh_to_xyxy(output.boxes.float())
    out = []
    for i, (height, width) in enumerate(sizes):
        keep = scores[i] > threshold
        order = scores[i][keep].argsort(descending=True)
        scale = boxes.new_tensor([width, height, width, height])
        out.append(Detections(boxes[i][keep][order] * scale, scores[i][keep][order], labels[i][keep][order]))
    return out


def draw_detections(
    image: Image.Image,
    detections: Detections,
    class_names: Sequence[str],
    truth: tuple[Tensor, Tensor] | None = None,
    scale: int = 1,
) -> Image.Image:
    """A copy of ``image`` (enlarged ``scale`` times, for small images) with the detections drawn
    (coloured by class, labelled with name and score) and, if given, the true ``(boxes, labels)`` as
    thin white outlines."""
    picture = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    if truth is not None:
        for box in (truth[0] * scale).tolist():
            draw.rectangle(box, outline=(255, 255, 255), width=1)
    boxes = detections.boxes * scale
    for box, score, label in zip(boxes.tolist(), detections.scores.tolist(), detections.labels.tolist()):
        colour = PALETTE[label % len(PALETTE)]
        draw.rectangle(box, outline=colour, width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{class_names[label]} {score:.2f}", fill=colour)
    return picture
