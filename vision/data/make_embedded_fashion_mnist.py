"""Extract the embedded, class-balanced Fashion-MNIST subset from Debian's ``dataset-fashion-mnist``.

Fashion-MNIST: Xiao, Rasul and Vollgraf 2017 (MIT licence). Set-up and use::

    apt-get install -y dataset-fashion-mnist          # installs /usr/share/datasets/fashion-mnist
    python vision/data/make_embedded_fashion_mnist.py  # writes vision/data/embedded/fashion_mnist

It picks 1000 training and 200 test images per class with a fixed seed (the same files every
run), keeps them in their original order, and writes gzip-compressed IDX files with the MNIST
names, so :func:`polyformer.vision.data.load_idx_folder` reads them like the full set.

Shape legend: N images, 28 x 28 image size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from polyformer.vision.data.fashion_mnist import EMBEDDED_FASHION_MNIST_DIR, FASHION_MNIST_DIR
from polyformer.vision.data.idx import find_idx_files, read_idx, write_idx

PER_CLASS = {"train": 1000, "test": 200}
FILE_PREFIX = {"train": "train", "test": "t10k"}


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` random indices of every class, sorted so the original order is kept."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has only {len(members)} images, {per_class} wanted")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def extract(source: Path, target: Path, seed: int = 0, per_class: dict[str, int] | None = None) -> None:
    """Write the balanced subset of the IDX files in ``source`` to ``target``.

    Args:
        source: folder with the full set's IDX files.
        target: output folder (created if needed).
        seed: random seed of the selection.
        per_class: images per class of each split (default 1000 train, 200 test).
    """
    target.mkdir(parents=True, exist_ok=True)
    for split, count in (PER_CLASS if per_class is None else per_class).items():
        found = find_idx_files(source, split)
        if found is None:
            raise SystemExit(f"no {split} IDX files in {source}; run `apt-get install -y dataset-fashion-mnist`")
        images, labels = read_idx(found[0]), read_idx(found[1])
        keep = balanced_indices(labels, count, seed)
        prefix = FILE_PREFIX[split]
        write_idx(target / f"{prefix}-images-idx3-ubyte.gz", images[keep])
        write_idx(target / f"{prefix}-labels-idx1-ubyte.gz", labels[keep].astype(np.uint8))
        print(f"{split}: {len(keep)} images ({count} per class) from {found[0]}")
    total = sum(p.stat().st_size for p in target.glob("*.gz"))
    print(f"wrote {target} ({total / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=FASHION_MNIST_DIR, help="folder with the full Fashion-MNIST IDX files"
    )
    parser.add_argument("--target", type=Path, default=EMBEDDED_FASHION_MNIST_DIR, help="where to write the subset")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the selection")
    args = parser.parse_args()
    extract(args.source, args.target, args.seed)


if __name__ == "__main__":
    main()
