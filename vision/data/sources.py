"""Open an image-classification dataset from one string: ``embedded``, a folder, or a CSV file.

This is what ``polyformer vision train DATA`` calls, so users point it at the data they have.

Shape legend: C channels, H x W image size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_embedded_fashion_mnist, load_fashion_mnist
from .folder import CSVImageDataset, ImageFolderDataset
from .idx import find_idx_files, load_idx_folder
from .image_dataset import ImageClassificationDataset

__all__ = ["open_image_dataset"]

_SPLIT_DIRS = {
    "train": ("train",),
    "test": ("test", "val", "valid", "validation"),
    "val": ("val", "valid", "validation", "test"),
}


def open_image_dataset(
    source: str | Path,
    split: str = "train",
    transform: Callable[[Tensor], Any] | None = None,
    skip_bad: bool = False,
    class_names: Sequence[str] | None = None,
) -> ImageClassificationDataset:
    """The ``split`` ("train", "test" or "val") of the dataset ``source`` names.

    ``source`` is tried in this order:

    1. ``"embedded"``: the Fashion-MNIST subset shipped in the package (10000 train / 2000 test);
       ``"fashion-mnist"``: the full set from ``/usr/share/datasets/fashion-mnist``.
    2. a ``.csv`` file of ``path,label`` rows (the split is ignored).
    3. a folder of MNIST-style IDX files (``train-*`` / ``t10k-*``).
    4. a folder with a ``<split>/`` sub-folder of class folders (test and val stand in for each
       other), or a ``<split>.csv`` file.
    5. a folder of class sub-folders (the split is ignored).

    Args:
        source: see above.
        split: which split to open.
        transform: applied to each uint8 image tensor (C, H, W).
        skip_bad: skip unreadable images and count them (``dataset.skipped``) instead of raising.
        class_names: classes in label order for folders and CSV files (e.g. a trained model's).

    Raises:
        FileNotFoundError: nothing usable at ``source``.
    """
    text = str(source)
    if text == "embedded":
        return load_embedded_fashion_mnist("test" if split == "val" else split, transform)
    if text == "fashion-mnist":
        return load_fashion_mnist("test" if split == "val" else split, FASHION_MNIST_DIR, transform)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        return CSVImageDataset(path, transform=transform, skip_bad=skip_bad, class_names=class_names)
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset {source} not found: give 'embedded', a folder of images or IDX files, or a CSV file"
        )
    if find_idx_files(path, split) is not None:
        names = class_names if class_names is not None else _idx_class_names(path)
        return load_idx_folder(path, split, transform, names)
    for name in _SPLIT_DIRS.get(split, (split,)):
        if (path / name).is_dir():
            return ImageFolderDataset(path / name, transform, skip_bad, class_names=class_names)
        if (path / f"{name}.csv").is_file():
            return CSVImageDataset(
                path / f"{name}.csv", transform=transform, skip_bad=skip_bad, class_names=class_names
            )
    return ImageFolderDataset(path, transform, skip_bad, class_names=class_names)


def _idx_class_names(path: Path) -> Sequence[str] | None:
    """Fashion-MNIST names for a Fashion-MNIST folder (by its name), else None (labels as text)."""
    return FASHION_MNIST_CLASSES if "fashion" in path.resolve().name.lower() else None
