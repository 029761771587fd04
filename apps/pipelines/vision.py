"""Vision pipeline tasks: image-classification and object-detection.

Both take image paths, PIL images, NumPy arrays (H, W) / (H, W, C) or uint8 tensors (C, H, W),
one or a list. ``pipeline("image-classification", model=DIR)`` returns the top-k ``{"label": str,
"score": float}`` dicts per image; ``pipeline("object-detection", model=DIR)`` returns the
detections per image as ``{"label": str, "score": float, "box": [xmin, ymin, xmax, ymax]}`` in the
image's own pixels, best first.

Shape legend: B batch, C channels, H x W image size, S model image side, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors

from polyformer.apps.engine import autocast, logits_of, resolve_precision
from polyformer.vision.data import (
    build_eval_transform,
    detection_collate,
    detection_transform,
    image_from_pil,
    read_image,
)
from polyformer.vision.detr import DETR
from polyformer.vision.detr.postprocess import Detections, detections_from_output, draw_detections
from polyformer.vision.vit import ViT

from . import PipelineTask, register_task, resolve_model_dir

__all__ = ["ImageClassificationPipeline", "ObjectDetectionPipeline"]


def image_tensor(image: Any, what: str) -> Tensor:
    """A raw image (path, PIL image, array (H, W[, C]) or tensor (C, H, W)) as a uint8 tensor (C, H, W)."""
    if isinstance(image, str | Path):
        return read_image(image)
    if isinstance(image, Image.Image):
        return image_from_pil(image)
    if isinstance(image, np.ndarray):
        return image_from_pil(Image.fromarray(image))
    if isinstance(image, Tensor) and image.dim() == 3:
        return image
    raise TypeError(
        f"cannot {what} a {type(image).__name__}: give a path, a PIL image, an array (H, W[, C]) or a tensor (C, H, W)"
    )


class ImageClassificationPipeline:
    """Classify images with a ViT; see the module docstring for inputs and outputs.

    Args:
        model: a loaded ViT (its config gives image size, channels, normalisation, class names).
        batch_size: images per forward pass.
        top_k: labels returned per image.
        device: where the model runs.
        precision: "auto" (bf16 where native), "fp32" or "bf16".
    """

    def __init__(
        self,
        model: ViT,
        batch_size: int = 32,
        top_k: int = 5,
        device: str | torch.device = "cpu",
        precision: str = "auto",
    ):
        if batch_size < 1 or top_k < 1:
            raise ValueError(f"batch_size and top_k must be at least 1, got {batch_size} and {top_k}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size, self.top_k = batch_size, top_k
        self.precision = resolve_precision(precision, self.device)
        cfg = model.config
        self.transform = build_eval_transform(cfg.image_size, cfg.in_channels, cfg.image_mean, cfg.image_std)
        self.labels = list(cfg.class_names) if cfg.class_names else [str(i) for i in range(cfg.num_classes)]

    def preprocess(self, image: Any) -> Tensor:
        """One raw image -> the model input (C, S, S)."""
        return self.transform(image_tensor(image, "classify"))

    @torch.no_grad()
    def probabilities(self, images: Sequence[Any]) -> Tensor:
        """Class probabilities (N, K) of raw images, computed ``batch_size`` at a time."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack(
                [self.preprocess(image) for image in images[start : start + self.batch_size]]
            )  # (B, C, S, S)
            with autocast(self.precision, self.device):
                logits = logits_of(self.model(batch.to(self.device)))
            chunks.append(logits.float().softmax(dim=-1).cpu())  # (B, K)
        return torch.cat(chunks)

    def __call__(self, images: Any, top_k: int | None = None) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Top-k labels with probabilities: a list of dicts for one image, a list of such lists for many."""
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        if not batch:
            return []
        k = min(top_k or self.top_k, len(self.labels))
        scores, indices = self.probabilities(batch).topk(k, dim=-1)
        results = [
            [
                {"label": self.labels[i], "score": round(float(s), 6)}
                for s, i in zip(row_scores.tolist(), row_indices.tolist())
            ]
            for row_scores, row_indices in zip(scores, indices)
        ]
        return results[0] if single else results


def build_image_classification(
    model: str | Path, batch_size: int = 32, top_k: int = 5, device: str | torch.device = "cpu", precision: str = "auto"
) -> ImageClassificationPipeline:
    """The image-classification pipeline over a ViT directory, run or shipped checkpoint."""
    vit = ViT.from_pretrained(resolve_model_dir(model, "image-classification"))
    return ImageClassificationPipeline(vit, batch_size=batch_size, top_k=top_k, device=device, precision=precision)


register_task(
    PipelineTask(
        "image-classification", build_image_classification, "top-k labels of images (ViT)",
        default_model="vit_fashion_mnist", needs="a ViT directory or training run directory",
        families=("vit",),
    )
)  # fmt: skip


class ObjectDetectionPipeline:
    """Detect objects with DETR; see the module docstring for inputs and outputs.

    Args:
        model: a loaded DETR (its config gives the resize sizes, normalisation and class names).
        batch_size: images per forward pass (padded to a common size with a pixel mask).
        threshold: keep detections scoring above this.
        device: where the model runs.
        precision: "auto" (bf16 where native), "fp32" or "bf16".
    """

    def __init__(
        self,
        model: DETR,
        batch_size: int = 8,
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
        precision: str = "auto",
    ):
        if batch_size < 1 or not 0.0 <= threshold < 1.0:
            raise ValueError(f"batch_size must be at least 1 and threshold in [0, 1), got {batch_size}, {threshold}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size, self.threshold = batch_size, threshold
        self.precision = resolve_precision(precision, self.device)
        cfg = model.config
        self.transform = detection_transform(False, cfg.min_size, cfg.max_size, cfg.image_mean, cfg.image_std)
        self.labels = list(cfg.class_names) if cfg.class_names else [str(i) for i in range(cfg.num_classes)]

    def preprocess(self, image: Any) -> tuple[Tensor, tuple[int, int]]:
        """One raw image -> the resized, normalised RGB input (3, h, w) and the original (height, width)."""
        tensor = image_tensor(image, "detect objects in")
        if tensor.shape[0] == 1:
            tensor = tensor.expand(3, -1, -1)
        if tensor.shape[0] != 3:
            raise ValueError(f"object detection needs RGB or grayscale images, got {tensor.shape[0]} channels")
        return self.transform(tv_tensors.Image(tensor)).as_subclass(Tensor), tuple(tensor.shape[-2:])

    @torch.no_grad()
    def detect(self, images: Sequence[Any], threshold: float | None = None) -> list[Detections]:
        """Detections (pixel boxes of the original images) of raw images, ``batch_size`` at a time."""
        threshold = self.threshold if threshold is None else threshold
        found: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            inputs = [self.preprocess(image) for image in images[start : start + self.batch_size]]
            batch = detection_collate([(tensor, None) for tensor, _ in inputs])
            with autocast(self.precision, self.device):
                output = self.model(batch.images.to(self.device), batch.pixel_mask.to(self.device))
            sizes = [size for _, size in inputs]
            found += detections_from_output(output, sizes, threshold, self.model.config.sigmoid_scores)
        return [Detections(d.boxes.cpu(), d.scores.cpu(), d.labels.cpu()) for d in found]

    def __call__(
        self, images: Any, threshold: float | None = None
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Detections as plain dicts: a list for one image, a list of such lists for many."""
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        if not batch:
            return []
        results = [
            [
                {"label": self.labels[label], "score": round(score, 6), "box": [round(v, 2) for v in box]}
                for box, score, label in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist())
            ]
            for d in self.detect(batch, threshold)
        ]
        return results[0] if single else results

    def annotate(
        self, image: Any, detections: Detections, truth: tuple[Tensor, Tensor] | None = None, scale: int = 1
    ) -> Image.Image:
        """The image (enlarged ``scale`` times) with ``detections`` (and, if given, the true boxes) drawn on it."""
        picture = Image.fromarray(image_tensor(image, "draw on").expand(3, -1, -1).permute(1, 2, 0).numpy())
        return draw_detections(picture, detections, self.labels, truth, scale)


def build_object_detection(
    model: str | Path,
    batch_size: int = 8,
    threshold: float = 0.5,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> ObjectDetectionPipeline:
    """The object-detection pipeline over a DETR directory (ours or Hugging Face), run or shipped checkpoint."""
    detr = DETR.from_pretrained(resolve_model_dir(model, "object-detection"))
    return ObjectDetectionPipeline(detr, batch_size=batch_size, threshold=threshold, device=device, precision=precision)


register_task(
    PipelineTask(
        "object-detection", build_object_detection, "labelled boxes of objects in images (DETR)",
        default_model="detr_shapes", needs="a DETR directory (ours or Hugging Face) or training run directory",
        families=("detr",),
    )
)  # fmt: skip
