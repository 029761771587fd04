"""Object-detection annotations in the formats people have: COCO JSON, Pascal VOC XML and CSV.

Every reader returns a :class:`DetectionData`: one :class:`DetectionSample` per image (its file,
pixel boxes as (xmin, ymin, xmax, ymax) and class indices) and the class list. Without a given
class list the classes come from the annotations (COCO's categories in id order, the sorted
names otherwise); with one (a trained model's) every name must be in it, so a checkpoint is never
used with a mismatched class count.

Every box is checked: inside the image (up to one pixel of slack, then clipped) and of positive
width and height. A bad box is a ``BadAnnotationError`` naming the file and the annotation (COCO
id, VOC object number, CSV line), or, with ``skip_bad=True``, dropped and counted in
``DetectionData.skipped``. A missing image file is reported the same way.

- COCO: ``{"images": [{id, file_name, width, height}], "annotations": [{id, image_id,
  category_id, bbox: [x, y, w, h], iscrowd}], "categories": [{id, name}]}``; images are looked
  up beside the JSON file or in its ``images/`` folder; crowd annotations are left out (as DETR).
- VOC: a folder of ``<annotation>`` XML files (``Annotations/`` with ``JPEGImages/``, or both
  side by side): ``filename``, ``size/width|height``, ``object/name`` and ``object/bndbox``.
- CSV: a header ``image,xmin,ymin,xmax,ymax,label`` and one row per box (several rows per image);
  a row with the box fields empty lists an image without objects. Paths are relative to the CSV.

Shape legend: G objects of one image.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

__all__ = [
    "BadAnnotationError",
    "EMBEDDED_SHAPES_DIR",
    "DetectionData",
    "DetectionSample",
    "open_detection_data",
    "read_coco",
    "read_detection_csv",
    "read_voc",
]

CSV_COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax", "label")
_SLACK = 1.0  # pixels a box may stick out of its image before it counts as bad


class BadAnnotationError(ValueError):
    """An annotation that cannot be used; the message names the file and the annotation."""


@dataclass
class DetectionSample:
    """One image's objects.

    Attributes:
        image: the image file.
        boxes: (G, 4) float pixel boxes (xmin, ymin, xmax, ymax).
        labels: (G,) int64 class indices.
        size: the image's (width, height) in pixels.
    """

    image: Path
    boxes: Tensor
    labels: Tensor
    size: tuple[int, int]


@dataclass
class DetectionData:
    """A detection data set: samples, class names (index order) and the number of bad items dropped."""

    samples: list[DetectionSample]
    class_names: list[str]
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)

    def max_objects(self) -> int:
        """The most objects in one image (DETR needs at least this many queries)."""
        return max((len(s.labels) for s in self.samples), default=0)

    def check_queries(self, num_queries: int) -> None:
        """Raise when an image has more objects than the model has queries, saying what to change."""
        most = self.max_objects()
        if most > num_queries:
            image = next(s.image for s in self.samples if len(s.labels) == most)
            raise ValueError(
                f"{image} has {most} objects but the model has {num_queries} queries; set num_queries to at "
                f"least {most} (a little more helps), or split such images"
            )


class _Collector:
    """Builds samples, checking boxes and mapping label names to indices."""

    def __init__(self, class_names: Sequence[str] | None, skip_bad: bool):
        self.fixed = list(class_names) if class_names is not None else None
        self.skip_bad = skip_bad
        self.skipped: list[str] = []
        self.items: list[tuple[Path, list[tuple[float, float, float, float]], list[str], tuple[int, int]]] = []

    def bad(self, message: str) -> None:
        if not self.skip_bad:
            raise BadAnnotationError(message + " (or pass --skip-bad to drop bad items and count them)")
        self.skipped.append(message)

    def box(self, coords: Sequence[float], size: tuple[int, int], where: str) -> tuple[float, ...] | None:
        """The checked (clipped) box, or None when it is bad and skipped."""
        x0, y0, x1, y1 = (float(c) for c in coords)
        width, height = size
        if not all(v == v for v in (x0, y0, x1, y1)):  # NaN
            self.bad(f"{where}: box {list(coords)} has a missing coordinate")
            return None
        if x1 <= x0 or y1 <= y0:
            self.bad(f"{where}: box (xmin, ymin, xmax, ymax) = {(x0, y0, x1, y1)} has no area")
            return None
        if x0 < -_SLACK or y0 < -_SLACK or x1 > width + _SLACK or y1 > height + _SLACK:
            self.bad(
                f"{where}: box (xmin, ymin, xmax, ymax) = {(x0, y0, x1, y1)} is outside the {width}x{height} image"
            )
            return None
        return (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))

    def image_exists(self, path: Path, where: str) -> bool:
        if path.is_file():
            return True
        self.bad(f"{where}: image file {path} not found")
        return False

    def add(self, image: Path, boxes: list, names: list[str], size: tuple[int, int]) -> None:
        self.items.append((image, boxes, names, size))

    def finish(self, source: Path) -> DetectionData:
        names = self.fixed if self.fixed is not None else sorted({n for _, _, ns, _ in self.items for n in ns})
        return self._finish(source, names)

    def _finish(self, source: Path, names: list[str]) -> DetectionData:
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({n for _, _, ns, _ in self.items for n in ns} - set(index))
        if unknown:
            raise BadAnnotationError(
                f"{source}: labels {unknown[:5]} are not among the model's classes {names}; "
                "evaluate with data of the same classes or fine-tune a model on these"
            )
        if not self.items:
            raise BadAnnotationError(
                f"{source}: no usable images" + (f" ({len(self.skipped)} skipped)" * bool(self.skipped))
            )
        samples = [
            DetectionSample(
                image,
                torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                torch.tensor([index[n] for n in ns], dtype=torch.int64),
                size,
            )
            for image, boxes, ns, size in self.items
        ]
        return DetectionData(samples, list(names), len(self.skipped), self.skipped)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BadAnnotationError(f"cannot read COCO annotations {path}: {err}") from err
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if not isinstance(data, dict) or missing:
        raise BadAnnotationError(f"{path} is not COCO detection JSON: it lacks the lists {missing}")
    return data


def read_coco(
    path: str | Path,
    image_root: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    skip_bad: bool = False,
) -> DetectionData:
    """Read a COCO detection JSON file.

    Args:
        path: the JSON file.
        image_root: the folder of the images; default ``images/`` beside the JSON if it exists, else its folder.
        class_names: the classes in index order (a model's); default the categories in id order.
        skip_bad: drop bad boxes and missing images (counted) instead of raising.
    """
    path = Path(path)
    data = _read_json(path)
    if image_root is None:
        image_root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    collector = _Collector(class_names, skip_bad)
    per_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        per_image.setdefault(int(ann["image_id"]), []).append(ann)
    for info in data["images"]:
        image = Path(image_root) / info["file_name"]
        where = f"{path.name} image {info['id']} ({info['file_name']})"
        if not collector.image_exists(image, where):
            continue
        size = (int(info["width"]), int(info["height"]))
        boxes, names = [], []
        for ann in per_image.get(int(info["id"]), []):
            if ann.get("iscrowd", 0):
                continue
            where_ann = f"{path.name} annotation {ann.get('id')} ({info['file_name']})"
            if int(ann["category_id"]) not in categories:
                collector.bad(f"{where_ann}: category_id {ann['category_id']} is not among the categories")
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            box = collector.box((x, y, x + w, y + h), size, where_ann)
            if box is not None:
                boxes.append(box)
                names.append(categories[int(ann["category_id"])])
        collector.add(image, boxes, names, size)
    if class_names is None:  # COCO's category order, not alphabetical
        return collector._finish(path, [categories[i] for i in sorted(categories)])
    return collector.finish(path)


def _voc_files(folder: Path) -> tuple[list[Path], Path]:
    annotations = folder / "Annotations" if (folder / "Annotations").is_dir() else folder
    images = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else annotations
    return sorted(annotations.glob("*.xml")), images


def read_voc(folder: str | Path, class_names: Sequence[str] | None = None, skip_bad: bool = False) -> DetectionData:
    """Read a folder of Pascal VOC XML annotations (``Annotations/`` + ``JPEGImages/``, or side by side).

    Args:
        folder: the data set folder.
        class_names: the classes in index order (a model's); default the sorted object names.
        skip_bad: drop bad boxes and missing images (counted) instead of raising.
    """
    folder = Path(folder)
    files, image_dir = _voc_files(folder)
    if not files:
        raise BadAnnotationError(f"no VOC .xml annotation files in {folder} (or its Annotations/ folder)")
    collector = _Collector(class_names, skip_bad)
    for xml_path in files:
        try:
            root = ET.parse(xml_path).getroot()
            filename = root.findtext("filename") or ""
            size = (int(root.findtext("size/width") or 0), int(root.findtext("size/height") or 0))
        except (ET.ParseError, ValueError) as err:
            collector.bad(f"{xml_path}: not a readable VOC annotation ({err})")
            continue
        if not filename or min(size) <= 0:
            collector.bad(f"{xml_path}: needs <filename> and a positive <size><width>/<height>")
            continue
        image = image_dir / filename
        if not collector.image_exists(image, str(xml_path)):
            continue
        boxes, names = [], []
        for number, obj in enumerate(root.findall("object"), start=1):
            where = f"{xml_path} object {number}"
            name = (obj.findtext("name") or "").strip()
            try:
                coords = [float(obj.findtext(f"bndbox/{k}") or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError:
                coords = [float("nan")] * 4
            box = collector.box(coords, size, where) if name else collector.bad(f"{where}: has no <name>")
            if box is not None:
                boxes.append(box)
                names.append(name)
        collector.add(image, boxes, names, size)
    return collector.finish(folder)


def _image_size(path: Path, where: str, collector: _Collector) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as err:
        collector.bad(f"{where}: cannot read image {path}: {err}")
        return None


def read_detection_csv(
    path: str | Path, class_names: Sequence[str] | None = None, skip_bad: bool = False
) -> DetectionData:
    """Read a CSV of ``image,xmin,ymin,xmax,ymax,label`` rows (pixel boxes; paths relative to the CSV).

    Args:
        path: the CSV file (with that header).
        class_names: the classes in index order (a model's); default the sorted labels.
        skip_bad: drop bad rows and missing images (counted) instead of raising.
    """
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as err:
        raise BadAnnotationError(f"cannot read {path}: {err}") from err
    header = tuple(c.strip().lower() for c in rows[0]) if rows else ()
    if header != CSV_COLUMNS:
        raise BadAnnotationError(
            f"{path}: the first line must be the header {','.join(CSV_COLUMNS)}, got {','.join(header)}"
        )
    collector = _Collector(class_names, skip_bad)
    images: dict[Path, tuple[list, list, tuple[int, int]]] = {}
    broken: set[Path] = set()
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path.name} line {line}"
        if len(row) != len(CSV_COLUMNS):
            collector.bad(f"{where}: expected {len(CSV_COLUMNS)} fields ({','.join(CSV_COLUMNS)}), got {len(row)}")
            continue
        image = path.parent / row[0].strip()
        if image in broken:
            continue
        if image not in images:
            size = _image_size(image, where, collector) if collector.image_exists(image, where) else None
            if size is None:
                broken.add(image)
                continue
            images[image] = ([], [], size)
        boxes, names, size = images[image]
        fields, label = [f.strip() for f in row[1:5]], row[5].strip()
        if not any(fields) and not label:
            continue  # an image without objects
        try:
            coords = [float(f) for f in fields]
        except ValueError:
            collector.bad(f"{where}: box fields {fields} are not numbers")
            continue
        box = collector.box(coords, size, where) if label else collector.bad(f"{where}: no label")
        if box is not None:
            boxes.append(box)
            names.append(label)
    for image, (boxes, names, size) in images.items():
        collector.add(image, boxes, names, size)
    return collector.finish(path)


EMBEDDED_SHAPES_DIR = Path(__file__).parent / "embedded" / "shapes"
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "valid"), "val": ("val", "valid", "test")}


def open_detection_data(
    source: str | Path, split: str = "train", class_names: Sequence[str] | None = None, skip_bad: bool = False
) -> DetectionData:
    """The ``split`` of the detection data ``source`` names.

    ``source`` is ``"shapes"`` (the embedded synthetic set), a COCO ``.json`` file, a ``.csv`` file,
    or a folder: one with a sub-folder for the split (``train/``, ``test/`` or ``val/``) is entered
    first; then a folder with ``annotations.json`` is COCO, one with ``.xml`` files (or an
    ``Annotations/`` folder) is VOC, and one with a single ``.csv`` file is CSV.

    Raises:
        FileNotFoundError: the source does not exist or holds no recognised annotations.
        BadAnnotationError: as the readers.
    """
    if split not in _SPLIT_DIRS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_DIRS)}, got {split!r}")
    path = EMBEDDED_SHAPES_DIR if str(source) == "shapes" else Path(source)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return read_coco(path, class_names=class_names, skip_bad=skip_bad)
        if path.suffix.lower() == ".csv":
            return read_detection_csv(path, class_names=class_names, skip_bad=skip_bad)
        raise FileNotFoundError(f"{path}: detection annotations are a COCO .json or a .csv file, or a VOC folder")
    if not path.is_dir():
        raise FileNotFoundError(f"detection data {source} not found (a COCO .json, a .csv, a folder, or 'shapes')")
    for name in _SPLIT_DIRS[split]:
        if (path / name).is_dir():
            return open_detection_data(path / name, split, class_names, skip_bad)
    if (path / "annotations.json").is_file():
        return read_coco(path / "annotations.json", class_names=class_names, skip_bad=skip_bad)
    if (path / "Annotations").is_dir() or any(path.glob("*.xml")):
        return read_voc(path, class_names=class_names, skip_bad=skip_bad)
    tables = sorted(path.glob("*.csv"))
    if len(tables) == 1:
        return read_detection_csv(tables[0], class_names=class_names, skip_bad=skip_bad)
    raise FileNotFoundError(
        f"{path} holds no detection annotations: expected annotations.json (COCO), .xml files (VOC), one .csv, "
        f"or a {'/'.join(_SPLIT_DIRS[split])} sub-folder"
    )
