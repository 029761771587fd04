"""Shared parts of the image-classification datasets: decoding one image and the dataset base class.

Every dataset yields ``(image, label)`` pairs: ``image`` is what the transform makes of a uint8
tensor (C, H, W) (C = 1 for grayscale files, 3 otherwise; no transform returns that tensor) and
``label`` is the class index. Unreadable images raise :class:`BadImageError`, which names the file.

Shape legend: C channels, H x W image size, N images, K classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

__all__ = ["BadImageError", "ImageClassificationDataset", "image_from_pil", "read_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class BadImageError(ValueError):
    """An image file that cannot be read or decoded; the message names the file (and CSV line)."""


def image_from_pil(image: Image.Image) -> Tensor:
    """A PIL image as a uint8 image tensor (C, H, W): grayscale modes give C = 1, all others RGB."""
    if image.mode.startswith("I") or image.mode == "F":  # high bit depth grayscale: scale to 8 bits
        array = np.asarray(image, dtype=np.float64)
        scale = 256.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(array / scale, 0, 255).astype(np.uint8))
    image = image.convert("L" if image.mode in _GRAY_MODES else "RGB")
    return tv_tensors.Image(TF.pil_to_tensor(image))


def read_image(path: str | Path, where: str = "") -> Tensor:
    """Decode an image file to a uint8 tensor (C, H, W).

    Args:
        path: the image file.
        where: extra context for the error message, e.g. ``"labels.csv line 7"``.

    Raises:
        BadImageError: the file is missing, unreadable or not a decodable image.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image_from_pil(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        context = f" ({where})" if where else ""
        raise BadImageError(f"cannot read image {path}{context}: {err}") from err


class ImageClassificationDataset(Dataset):
    """Base of the datasets here: class names, labels, a transform, and skipped-file bookkeeping.

    Subclasses implement :meth:`load` (the raw uint8 image of one index) and fill ``targets``;
    datasets of files override :meth:`item_keys` to name items by their paths.

    Attributes:
        classes: class names; the label of ``classes[i]`` is ``i``.
        targets: the label of every item, in order.
        transform: applied to each image tensor (C, H, W) uint8, or None.
        skipped: ``(file, reason)`` of every bad item that ``skip_bad=True`` left out.
        key_prefix: what :meth:`item_keys` puts before each index (e.g. the split, ``"train"``).
    """

    key_prefix = "item"

    def __init__(self, classes: Sequence[str], transform: Callable[[Tensor], Any] | None = None):
        self.classes = [str(name) for name in classes]
        self.targets: list[int] = []
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_skipped(self) -> int:
        """How many bad items were skipped (``skip_bad=True``)."""
        return len(self.skipped)

    def class_counts(self) -> list[int]:
        """Number of items of each class, indexed by label."""
        counts = torch.bincount(torch.tensor(self.targets, dtype=torch.long), minlength=self.num_classes)
        return counts.tolist()

    def item_keys(self) -> list[str]:
        """One stable text key per item, in dataset order (``"<key_prefix>:<index>"`` here).

        A held-out validation split is saved as the keys of its items, so a later run finds
        the same items again; subsets are the caller's business.
        """
        return [f"{self.key_prefix}:{index}" for index in range(len(self))]

    def load(self, index: int) -> Tensor:
        """The untransformed uint8 image (C, H, W) of item ``index``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
