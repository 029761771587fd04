"""Detection samples as model inputs: augmentation, resizing, normalisation and padded batches.

Augmentation follows DETR (Carion et al. 2020, appendix A.4; facebookresearch/detr
``datasets/coco.py``), written with torchvision transforms v2 so that boxes move with the pixels:
a random horizontal flip, half of the time a random crop (boxes clipped to it; boxes left without
area are dropped), and a resize of the shorter side to one of several scales (the longer side
capped). Evaluation resizes the shorter side to ``min_size`` only. Images are then normalised and
their boxes become (centre x, centre y, width, height) fractions of the resized image.

A batch pads images of different sizes at the bottom and right to the largest and marks the real
pixels in ``pixel_mask``; the model never attends to the padding.

Shape legend: B images, H x W (padded) image size, G objects of one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from polyformer.vision.detr import Targets, box_xyxy_to_cxcywh

from .detection import DetectionData, DetectionSample
from .image_dataset import read_image

__all__ = ["DetectionBatch", "DetectionDataset", "RandomSizeCrop", "detection_collate", "detection_transform"]


class RandomSizeCrop:
    """Crop a random window whose sides are ``min_scale`` to 1 times the image's, boxes clipped to it."""

    def __init__(self, min_scale: float = 0.6):
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.min_scale = min_scale

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        height, width = sample["image"].shape[-2:]
        scale = self.min_scale + (1 - self.min_scale) * torch.rand(2)
        crop_h, crop_w = max(1, int(height * scale[0])), max(1, int(width * scale[1]))
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        cropped = {key: TF.crop(sample[key], top, left, crop_h, crop_w) for key in ("image", "boxes")}
        return {**sample, **cropped}


def _resize(size: int, max_size: int) -> v2.Resize:
    """Shorter side to ``size`` with the longer side at most ``max_size`` (longer side = max_size when equal)."""
    return v2.Resize(size, max_size=max_size) if max_size > size else v2.Resize(None, max_size=max_size)


def detection_transform(
    train: bool,
    min_size: int,
    max_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scales: Sequence[float] = (0.75, 0.8125, 0.875, 0.9375, 1.0),
    crop: float = 0.5,
    crop_min_scale: float = 0.6,
    hflip: bool = True,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The v2 pipeline on ``{"image", "boxes", "labels"}`` samples.

    Args:
        train: augment (flip, crop, random scale) or only resize.
        min_size: the shorter side after resizing (training picks ``min_size * s`` for ``s`` in ``scales``).
        max_size: the longest the longer side may be.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        scales: fractions of ``min_size`` that training resizes to.
        crop: probability of the random crop in training.
        crop_min_scale: the smallest crop side as a fraction of the image side.
        hflip: random horizontal flips in training.
    """
    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if not train:
        return v2.Compose([_resize(min_size, max_size), *finish])
    sizes = sorted({max(1, round(min_size * s)) for s in scales})
    steps = [
        *([v2.RandomHorizontalFlip()] if hflip else []),
        v2.RandomApply([RandomSizeCrop(crop_min_scale)], p=crop),
        v2.RandomChoice([_resize(s, max_size) for s in sizes]),
        v2.SanitizeBoundingBoxes(min_size=1.0),
    ]
    return v2.Compose([*steps, *finish])


class DetectionBatch(NamedTuple):
    """A padded batch: normalised images (B, 3, H, W), real pixels (B, H, W) and each image's objects."""

    images: Tensor
    pixel_mask: Tensor
    targets: list[Targets]


class DetectionDataset(Dataset):
    """Samples of a :class:`DetectionData` as ``(image (3, H, W), Targets)`` after ``transform``.

    Args:
        data: the annotations.
        transform: a :func:`detection_transform` (or any callable on the sample dict).
    """

    def __init__(self, data: DetectionData, transform: Callable[[dict[str, Any]], dict[str, Any]]):
        self.data, self.transform = data, transform
        self.class_names = data.class_names

    def __len__(self) -> int:
        return len(self.data.samples)

    def sample_dict(self, index: int) -> dict[str, Any]:
        """The untransformed sample: uint8 RGB image, pixel xyxy boxes and labels."""
        sample: DetectionSample = self.data.samples[index]
        image = read_image(sample.image)
        if image.shape[0] == 1:
            image = tv_tensors.Image(image.expand(3, -1, -1))
        boxes = tv_tensors.BoundingBoxes(sample.boxes, format="XYXY", canvas_size=tuple(image.shape[-2:]))
        return {"image": image, "boxes": boxes, "labels": sample.labels}

    def __getitem__(self, index: int) -> tuple[Tensor, Targets]:
        out = self.transform(self.sample_dict(index))
        image = out["image"].as_subclass(Tensor)
        height, width = image.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = box_xyxy_to_cxcywh(out["boxes"].as_subclass(Tensor).float() / scale)
        return image, Targets(labels=out["labels"], boxes=boxes)


def detection_collate(items: Sequence[tuple[Tensor, Targets]]) -> DetectionBatch:
    """Pad images at the bottom and right to the batch's largest height and width, marking real pixels."""
    height = max(image.shape[-2] for image, _ in items)
    width = max(image.shape[-1] for image, _ in items)
    images = torch.zeros(len(items), 3, height, width)
    mask = torch.zeros(len(items), height, width, dtype=torch.bool)
    for i, (image, _) in enumerate(items):
        h, w = image.shape[-2:]
        images[i, :, :h, :w] = image
        mask[i, :h, :w] = True
    return DetectionBatch(images, mask, [targets for _, targets in items])
