"""MNIST-format IDX files (gzip or not) and datasets read from them.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code,
the number of dimensions, one big-endian int32 per dimension, then the values in big-endian
row-major order. MNIST, Fashion-MNIST (Xiao et al. 2017) and KMNIST ship in it.

Shape legend: N images, H x W image size, C channels.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors

from .image_dataset import ImageClassificationDataset

__all__ = ["IdxImageDataset", "find_idx_files", "load_idx_folder", "read_idx", "write_idx"]

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("=").str[1:]: k for k, v in _DTYPES.items()}
SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test"), "val": ("t10k", "test", "val")}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        magic = handle.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read IDX file {path}: {err}") from err


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or not), in native byte order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not IDX or is truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} not found")
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"IDX file {path} should hold {expected} bytes of data for shape {shape}, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: the name ends in .gz).

    The gzip header carries no timestamp, so the same array always gives the same bytes.
    """
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = _CODES.get(array.dtype.str[1:])
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 or float64")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload += array.astype(_DTYPES[code]).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    if compress:
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as handle,
        ):
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path


class IdxImageDataset(ImageClassificationDataset):
    """Images and labels from a pair of IDX files, held in memory as one uint8 tensor.

    Items are keyed ``"<split prefix>:<index>"`` (``"train:17"``, ``"t10k:3"``; the file name for
    files without an MNIST name), see :meth:`item_keys`.

    Args:
        images_path: IDX file of images (N, H, W) or (N, H, W, C), uint8.
        labels_path: IDX file of N integer labels.
        transform: applied to each uint8 image tensor (C, H, W).
        class_names: names of the classes by label; default the label numbers as text.

    Raises:
        ValueError: wrong dimensions or dtype, counts that differ, or labels outside ``class_names``.
    """

    def __init__(
        self,
        images_path: str | Path,
        labels_path: str | Path,
        transform: Callable[[Tensor], Any] | None = None,
        class_names: Sequence[str] | None = None,
    ):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim not in (3, 4) or images.dtype != np.uint8:
            raise ValueError(
                f"{images_path}: expected uint8 images shaped (N, H, W) or (N, H, W, C), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{labels_path}: expected a 1-D integer label array, got {labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
        if len(labels) == 0:
            raise ValueError(f"{labels_path} holds no labels; the dataset would be empty")
        if labels.min() < 0:
            raise ValueError(f"{labels_path}: negative label {int(labels.min())}")
        if class_names is None:
            class_names = [str(i) for i in range(int(labels.max()) + 1)]
        if labels.max() >= len(class_names):
            raise ValueError(f"{labels_path}: label {int(labels.max())} but only {len(class_names)} class names")
        super().__init__(class_names, transform)
        images = torch.from_numpy(images.copy())
        self.images = (
            images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2).contiguous()
        )  # (N, C, H, W)
        self.targets = labels.astype(np.int64).tolist()
        self.source = str(images_path)
        name = Path(images_path).name  # item keys "train:17": the MNIST split prefix, else the file name
        self.key_prefix = name.partition("-images")[0] if "-images" in name else name

    def load(self, index: int) -> Tensor:
        return tv_tensors.Image(self.images[index])


def find_idx_files(directory: str | Path, split: str = "train") -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` in ``directory``, or None if there are none.

    Files are recognised by the MNIST names: ``train-images-idx3-ubyte[.gz]`` /
    ``train-labels-idx1-ubyte[.gz]`` for "train", ``t10k-*`` (or ``test-*``) for "test" and "val".
    """
    directory = Path(directory)
    if split not in SPLIT_PREFIXES:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_PREFIXES)}")
    for prefix in SPLIT_PREFIXES[split]:
        images = sorted(directory.glob(f"{prefix}-images*idx3*"))
        labels = sorted(directory.glob(f"{prefix}-labels*idx1*"))
        if images and labels:
            return images[0], labels[0]
    return None


def load_idx_folder(
    directory: str | Path,
    split: str = "train",
    transform: Callable[[Tensor], Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> IdxImageDataset:
    """The ``split`` ("train" or "test") of an MNIST-style folder of IDX files.

    Raises:
        FileNotFoundError: the folder has no IDX files for that split.
    """
    found = find_idx_files(directory, split)
    if found is None:
        raise FileNotFoundError(
            f"no IDX files for split {split!r} in {directory}: expected e.g. train-images-idx3-ubyte.gz and "
            "train-labels-idx1-ubyte.gz (t10k-* for the test split)"
        )
    return IdxImageDataset(found[0], found[1], transform, class_names)
