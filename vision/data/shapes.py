"""A synthetic object-detection set: coloured circles, squares and triangles on textured backgrounds.

Every image is drawn from a seed, so the same call always gives the same pixels and boxes. Each
image has 1 to ``max_objects`` shapes of random colour (so colour never gives the class away),
size and position over a background of a colour gradient, stripes or a checkerboard with noise.
Shapes may overlap (a later shape covers part of an earlier one, never more than
``max_overlap`` of its box), and every box is the exact extent of the whole shape. The set is
written in COCO format (``annotations.json`` beside an ``images/`` folder), the format most
detection data comes in, so the demo and the tests read it with the same reader as users' data.

Shape legend: H x W image size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPE_CLASSES", "ShapesImage", "draw_shapes_image", "write_shapes_coco"]

SHAPE_CLASSES = ("circle", "square", "triangle")


@dataclass
class ShapesImage:
    """One drawn image and its objects: boxes as pixel (xmin, ymin, xmax, ymax), labels as class indices."""

    image: Image.Image
    boxes: list[tuple[float, float, float, float]]
    labels: list[int]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """An (H, W, 3) uint8 texture: gradient, stripes or checkerboard, plus pixel noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    low, high = rng.uniform(40, 140, 3), rng.uniform(110, 215, 3)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0, 2 * math.pi)
        t = (np.cos(angle) * x + np.sin(angle) * y + 1.5) / 3
    elif kind == 1:
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.08, 0.25)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (np.cos(angle) * x + np.sin(angle) * y) / period)
    else:
        cells = rng.integers(4, 12)
        t = ((np.floor(x * cells) + np.floor(y * cells)) % 2) * 0.6 + 0.2
    pixels = low + t[..., None] * (high - low) + rng.normal(0, 8, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _overlap(box: tuple[float, ...], other: tuple[float, ...]) -> float:
    """The fraction of ``other``'s area that ``box`` covers."""
    w = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    h = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    return w * h / ((other[2] - other[0]) * (other[3] - other[1]))


def _shape_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour, far from the background's muted range in at least one channel."""
    colour = rng.uniform(0, 255, 3)
    colour[rng.integers(3)] = rng.choice([rng.uniform(0, 30), rng.uniform(225, 255)])
    return tuple(int(c) for c in colour)


def draw_shapes_image(
    seed: int, size: int = 128, max_objects: int = 5, min_side: int = 14, max_side: int = 48, max_overlap: float = 0.3
) -> ShapesImage:
    """Draw one image from ``seed``.

    Args:
        seed: the image's seed.
        size: side of the square image.
        max_objects: the most shapes in one image (at least one).
        min_side: the smallest box side in pixels.
        max_side: the largest box side in pixels.
        max_overlap: the largest fraction of an earlier shape's box a later shape may cover.
    """
    rng = np.random.default_rng(seed)
    image = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(wanted * 20):  # tries; a crowded image may end with fewer shapes
        if len(boxes) == wanted:
            break
        side = int(rng.integers(min_side, max_side + 1))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        box = (float(x0), float(y0), float(x0 + side), float(y0 + side))
        if any(_overlap(box, other) > max_overlap or _overlap(other, box) > max_overlap for other in boxes):
            continue
        label = int(rng.integers(len(SHAPE_CLASSES)))
        colour = _shape_colour(rng)
        if SHAPE_CLASSES[label] == "circle":
            draw.ellipse([x0, y0, x0 + side - 1, y0 + side - 1], fill=colour)
        elif SHAPE_CLASSES[label] == "square":
            draw.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], fill=colour)
        else:
            draw.polygon([(x0 + side / 2, y0), (x0, y0 + side - 1), (x0 + side - 1, y0 + side - 1)], fill=colour)
        boxes.append(box)
        labels.append(label)
    return ShapesImage(image, boxes, labels)


def write_shapes_coco(
    folder: str | Path, count: int, seed: int = 0, size: int = 128, quality: int = 92, **options: int | float
) -> Path:
    """Write ``count`` images (``images/000000.jpg`` ...) and ``annotations.json`` (COCO) into ``folder``.

    Image ``i`` is drawn from seed ``seed * 1_000_003 + i``, so sets with different seeds share no
    image. ``options`` go to :func:`draw_shapes_image`. Returns the annotations file.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        drawn = draw_shapes_image(seed * 1_000_003 + i, size=size, **options)  # type: ignore[arg-type]
        name = f"{i:06d}.jpg"
        drawn.image.save(folder / "images" / name, quality=quality)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for (x0, y0, x1, y1), label in zip(drawn.boxes, drawn.labels):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_CLASSES)]
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}) + "\n")
    return path
