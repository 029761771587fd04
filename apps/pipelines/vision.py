"""Vision pipeline tasks: image-classification.

``pipeline("image-classification", model=DIR)`` takes image paths, PIL images, NumPy arrays
(H, W) / (H, W, C) or uint8 tensors (C, H, W), one or a list, and returns the top-k
``{"label": str, "score": float}`` dicts per image.

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

from polyformer.apps.engine import autocast, logits_of, resolve_precision
from polyformer.vision.data import build_eval_transform, image_from_pil, read_image
from polyformer.vision.vit import ViT

from . import PipelineTask, register_task, resolve_model_dir

__all__ = ["ImageClassificationPipeline"]


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
        if isinstance(image, str | Path):
            tensor = read_image(image)
        elif isinstance(image, Image.Image):
            tensor = image_from_pil(image)
        elif isinstance(image, np.ndarray):
            tensor = image_from_pil(Image.fromarray(image))
        elif isinstance(image, Tensor) and image.dim() == 3:
            tensor = image
        else:
            raise TypeError(
                f"cannot classify a {type(image).__name__}: "
                "give a path, a PIL image, an array (H, W[, C]) or a tensor (C, H, W)"
            )
        return self.transform(tensor)

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
    )
)  # fmt: skip
