"""Write the embedded synthetic shapes detection set (COCO format) into ``vision/data/embedded/shapes``.

Usage::

    python vision/data/make_embedded_shapes.py                       # the embedded train and test splits
    python vision/data/make_embedded_shapes.py --out DIR --train 5000  # a bigger set anywhere

The splits are drawn from different seeds (no image is in both), 128 x 128 pixels, 1 to 5 shapes
each (see :mod:`polyformer.vision.data.shapes`); images are JPEG (quality 92), the boxes exact.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from polyformer.vision.data.detection import EMBEDDED_SHAPES_DIR
from polyformer.vision.data.shapes import write_shapes_coco

SPLITS = {"train": 1, "test": 2}  # split -> seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EMBEDDED_SHAPES_DIR, help="folder to write train/ and test/ into")
    parser.add_argument("--train", type=int, default=240, help="training images")
    parser.add_argument("--test", type=int, default=60, help="test images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    args = parser.parse_args()
    for split, count in (("train", args.train), ("test", args.test)):
        folder = args.out / split
        if folder.exists():
            shutil.rmtree(folder)
        path = write_shapes_coco(folder, count, seed=SPLITS[split], size=args.size)
        print(f"{split}: {count} images -> {path}")


if __name__ == "__main__":
    main()
