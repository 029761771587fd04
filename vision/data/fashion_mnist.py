"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist).

28x28 grayscale images of clothing in 10 classes, 60000 train / 10000 test. Two sources:

- the embedded subset shipped inside this package (``embedded/fashion_mnist``): a
  class-balanced 10000 train / 2000 test images extracted by ``make_embedded_fashion_mnist.py``
  from Debian's ``dataset-fashion-mnist`` package;
- the full set from an IDX folder, by default Debian's ``/usr/share/datasets/fashion-mnist``
  (``apt-get install dataset-fashion-mnist``).

Shape legend: C = 1 channel, 28 x 28 images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from .idx import IdxImageDataset, load_idx_folder

__all__ = [
    "EMBEDDED_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "load_embedded_fashion_mnist",
    "load_fashion_mnist",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist installs it
EMBEDDED_FASHION_MNIST_DIR = Path(__file__).resolve().parent / "embedded" / "fashion_mnist"
EMBEDDED_SIZES = {"train": 10000, "test": 2000}  # images per split in the embedded subset (balanced over 10 classes)


def load_embedded_fashion_mnist(
    split: str = "train", transform: Callable[[Tensor], Any] | None = None
) -> IdxImageDataset:
    """The embedded, class-balanced Fashion-MNIST subset: "train" (10000) or "test" (2000)."""
    if split not in EMBEDDED_SIZES:
        raise ValueError(f"the embedded Fashion-MNIST subset has splits {sorted(EMBEDDED_SIZES)}, not {split!r}")
    return load_idx_folder(EMBEDDED_FASHION_MNIST_DIR, split, transform, FASHION_MNIST_CLASSES)


def load_fashion_mnist(
    split: str = "train",
    directory: str | Path = FASHION_MNIST_DIR,
    transform: Callable[[Tensor], Any] | None = None,
) -> IdxImageDataset:
    """The full Fashion-MNIST ``split`` ("train" or "test") from an IDX folder.

    Raises:
        FileNotFoundError: the folder lacks the files; the message says how to install them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST folder {directory} not found; install Debian's package with "
            "`apt-get install dataset-fashion-mnist` or pass a folder holding the IDX files"
        )
    return load_idx_folder(directory, split, transform, FASHION_MNIST_CLASSES)
