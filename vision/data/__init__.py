"""Image data: classification (image folders, CSV lists, IDX files, embedded Fashion-MNIST, transforms)
and detection (COCO, VOC and CSV annotations, the embedded shapes set, box-aware transforms).

Datasets yield ``(image, label)``; without a transform ``image`` is a uint8 tensor (C, H, W).
Pass :func:`build_train_transform` / :func:`build_eval_transform` to get normalised float
tensors the size a model expects, and use :class:`BatchMixer` for Mixup / CutMix per batch.
"""

from .detection import (
    EMBEDDED_SHAPES_DIR,
    BadAnnotationError,
    DetectionData,
    DetectionSample,
    open_detection_data,
    read_coco,
    read_detection_csv,
    read_voc,
)
from .detection_dataset import DetectionBatch, DetectionDataset, detection_collate, detection_transform
from .fashion_mnist import (
    EMBEDDED_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    load_embedded_fashion_mnist,
    load_fashion_mnist,
)
from .folder import CSVImageDataset, ImageFolderDataset
from .idx import IdxImageDataset, find_idx_files, load_idx_folder, read_idx, write_idx
from .image_dataset import IMAGE_EXTENSIONS, BadImageError, ImageClassificationDataset, image_from_pil, read_image
from .sources import open_image_dataset
from .transforms import AUGMENTS, BatchMixer, build_eval_transform, build_train_transform

__all__ = [name for name in dir() if not name.startswith("_")]
