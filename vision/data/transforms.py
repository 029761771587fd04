"""Image transforms (torchvision.transforms.v2) for training and evaluation, and batch mixing.

Training augmentation follows the DeiT / timm recipe (Touvron et al. 2021, "Training
data-efficient image transformers"): random resized crop, flips, RandAugment (Cubuk et al.
2020) or TrivialAugment (Muller and Hutter 2021), random erasing (Zhong et al. 2020), and,
per batch, Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019).

Every transform takes a uint8 image tensor (C, H, W) as the datasets here yield it, converts
it to the model's channel count, and returns a normalised float32 tensor (C, S, S).

Shape legend: B batch, C channels, H x W input size, S output side, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2

__all__ = ["AUGMENTS", "BatchMixer", "build_eval_transform", "build_train_transform"]

AUGMENTS = ("none", "randaugment", "trivialaugment", "autoaugment")


def _to_channels(channels: int) -> v2.Transform:
    if channels == 1:
        return v2.Grayscale(num_output_channels=1)
    if channels == 3:
        return v2.RGB()
    raise ValueError(f"images can be converted to 1 or 3 channels, not {channels}")


def _normalise(channels: int, mean: Sequence[float] | None, std: Sequence[float] | None) -> list[v2.Transform]:
    mean = [0.5] * channels if mean is None else list(mean)
    std = [0.5] * channels if std is None else list(std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean {mean} and std {std} need one value per channel ({channels})")
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _augment(name: str) -> list[v2.Transform]:
    if name not in AUGMENTS:
        raise ValueError(f"unknown augment {name!r}; choose one of {AUGMENTS}")
    if name == "randaugment":
        return [v2.RandAugment(num_ops=2, magnitude=9)]
    if name == "trivialaugment":
        return [v2.TrivialAugmentWide()]
    if name == "autoaugment":
        return [v2.AutoAugment()]
    return []


def build_train_transform(
    image_size: int,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    vflip: float = 0.0,
    augment: str = "none",
    random_erasing: float = 0.0,
) -> v2.Compose:
    """Training transform: channels -> random resized crop -> flips -> augment -> normalise -> erase.

    Args:
        image_size: output side S.
        channels: output channels (1 or 3).
        mean: per-channel normalisation mean (default 0.5 each).
        std: per-channel normalisation std (default 0.5 each).
        crop_scale: area range of the random resized crop; ``(1.0, 1.0)`` only resizes.
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        augment: ``none``, ``randaugment``, ``trivialaugment`` or ``autoaugment``.
        random_erasing: probability of erasing a random rectangle (after normalising).
    """
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
    steps: list[v2.Transform] = [_to_channels(channels)]
    if crop_scale == (1.0, 1.0):
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    else:
        steps.append(v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if vflip > 0:
        steps.append(v2.RandomVerticalFlip(vflip))
    steps += _augment(augment)
    steps += _normalise(channels, mean, std)
    if random_erasing > 0:
        steps.append(v2.RandomErasing(p=random_erasing, value=0))
    return v2.Compose(steps + [v2.ToPureTensor()])


def build_eval_transform(
    image_size: int,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_fraction: float = 1.0,
) -> v2.Compose:
    """Evaluation transform: channels -> resize (shorter side S / crop_fraction) -> centre crop S -> normalise.

    Args:
        image_size: output side S.
        channels: output channels (1 or 3).
        mean: per-channel normalisation mean (default 0.5 each).
        std: per-channel normalisation std (default 0.5 each).
        crop_fraction: the centre crop's share of the resized image (0.875 is the ImageNet habit).
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    resize = round(image_size / crop_fraction)
    steps: list[v2.Transform] = [_to_channels(channels), v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(steps + _normalise(channels, mean, std) + [v2.ToPureTensor()])


class BatchMixer:
    """Mixup or CutMix on a whole batch (one chosen at random per call, with probability ``prob``).

    Labels become soft targets (B, K); train with ``F.cross_entropy(logits, soft_targets)``.

    Args:
        num_classes: K.
        mixup_alpha: Beta(alpha, alpha) of Mixup; 0 disables Mixup.
        cutmix_alpha: Beta(alpha, alpha) of CutMix; 0 disables CutMix.
        prob: probability of mixing a batch at all (unmixed batches get one-hot targets).
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0):
        choices: list[v2.Transform] = []
        if mixup_alpha > 0:
            choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not choices:
            raise ValueError("BatchMixer needs mixup_alpha > 0 or cutmix_alpha > 0")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.num_classes, self.prob = num_classes, prob
        self.mix = v2.RandomChoice(choices)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, C, S, S) and integer labels (B,) -> mixed images and soft targets (B, K)."""
        if torch.rand(()) >= self.prob:
            return images, torch.nn.functional.one_hot(labels, self.num_classes).to(images.dtype)
        return self.mix(images, labels)
