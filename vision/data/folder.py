"""Image files on disk: a folder with one sub-folder per class, or a CSV of ``path,label`` rows.

Every file is decoded once when the dataset is built (``verify=True``), so a corrupt or
unreadable image stops the run before training with a message naming the file (and the CSV
line), or, with ``skip_bad=True``, is left out and counted in ``dataset.skipped``.

Shape legend: C channels, H x W image size.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from .image_dataset import IMAGE_EXTENSIONS, BadImageError, ImageClassificationDataset, read_image

__all__ = ["CSVImageDataset", "ImageFolderDataset"]


class _FileImageDataset(ImageClassificationDataset):
    """A list of (file, label, where) items, checked once and decoded on access."""

    def __init__(self, classes: Sequence[str], transform: Callable[[Tensor], Any] | None, skip_bad: bool):
        super().__init__(classes, transform)
        self.skip_bad = skip_bad
        self.paths: list[Path] = []
        self._where: list[str] = []

    def _add(self, path: Path, label: int, where: str, verify: bool) -> None:
        if verify:
            try:
                read_image(path, where)
            except BadImageError as err:
                if not self.skip_bad:
                    raise
                self.skipped.append((str(path), str(err)))
                return
        self.paths.append(path)
        self.targets.append(label)
        self._where.append(where)

    def _require_items(self, source: str | Path) -> None:
        if not self.targets:
            skipped = f" ({self.num_skipped} unreadable files were skipped)" if self.skipped else ""
            raise ValueError(f"no usable images in {source}{skipped}")

    def item_keys(self) -> list[str]:
        """Each item's path relative to ``root`` (posix, e.g. ``"cat/001.png"``), in dataset order.

        The keys do not change when the whole folder moves elsewhere.
        """
        return [_relative_key(path, self.root) for path in self.paths]

    def load(self, index: int) -> Tensor:
        return read_image(self.paths[index], self._where[index])


def _relative_key(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        return Path(path).absolute().as_posix()


class ImageFolderDataset(_FileImageDataset):
    """Images in ``root/<class name>/<file>``; classes are the sub-folder names, sorted.

    Args:
        root: the folder holding one sub-folder per class.
        transform: applied to each uint8 image tensor (C, H, W).
        skip_bad: leave out unreadable images (counted in ``skipped``) instead of raising.
        verify: decode every image now (default); with False, bad files fail when loaded.
        extensions: file suffixes that count as images (case-insensitive).
        class_names: expected classes in label order (e.g. a trained model's); every sub-folder
            must be one of them (a class may have no sub-folder). Default: the sorted sub-folder names.

    Items are keyed by their path relative to ``root`` (see :meth:`item_keys`).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class sub-folders, a sub-folder not in ``class_names``, or a class
            sub-folder without (readable) images.
        BadImageError: an unreadable image (without ``skip_bad``).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Tensor], Any] | None = None,
        skip_bad: bool = False,
        verify: bool = True,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        class_names: Sequence[str] | None = None,
    ):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} not found")
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise ValueError(f"{root} has no class sub-folders; expected {root}/<class name>/<image files>")
        classes = list(class_names) if class_names is not None else folders
        unknown = sorted(set(folders) - set(classes))
        if unknown:
            raise ValueError(f"{root}: sub-folder(s) {unknown} are not among the expected classes {classes}")
        super().__init__(classes, transform, skip_bad)
        suffixes = {s.lower() for s in extensions}
        empty = []  # (class folder, unreadable files skipped in it)
        for name in folders:
            items, skipped = len(self.targets), len(self.skipped)
            for path in sorted((root / name).rglob("*")):
                if path.is_file() and path.suffix.lower() in suffixes:
                    self._add(path, classes.index(name), "", verify)
            if len(self.targets) == items:
                empty.append((root / name, len(self.skipped) - skipped))
        if empty:
            raise ValueError(_empty_folders_message(empty))
        self.root = root


def _empty_folders_message(empty: list[tuple[Path, int]], shown: int = 5) -> str:
    """Names the class folders without images (the first ``shown``), with their skipped unreadable files."""
    names = [f"{folder} ({bad} unreadable files skipped)" if bad else str(folder) for folder, bad in empty[:shown]]
    more = f" and {len(empty) - shown} more" if len(empty) > shown else ""
    verb = "has" if len(empty) == 1 else "have"
    return (
        f"{', '.join(names)}{more} {verb} no images; every class folder needs at least one image "
        "(remove the folder or add images)"
    )


class CSVImageDataset(_FileImageDataset):
    """Images listed in a CSV file of ``path,label`` rows (an optional header row ``path,label``).

    Paths are relative to ``root`` (default: the CSV file's folder) unless absolute. Labels are
    class names or class indices. Items are keyed by their path relative to ``root`` (see
    :meth:`item_keys`; a file listed twice gives the same key twice).

    Args:
        csv_path: the CSV file.
        root: folder the paths are relative to.
        transform: applied to each uint8 image tensor (C, H, W).
        skip_bad: leave out unreadable images (counted in ``skipped``) instead of raising.
        verify: decode every image now (default); with False, bad files fail when loaded.
        class_names: classes in label order; default the sorted distinct labels.

    Raises:
        FileNotFoundError: no such CSV file.
        ValueError: a malformed row or unknown label (naming the line), or no images.
        BadImageError: an unreadable image (without ``skip_bad``), naming the file and line.
    """

    def __init__(
        self,
        csv_path: str | Path,
        root: str | Path | None = None,
        transform: Callable[[Tensor], Any] | None = None,
        skip_bad: bool = False,
        verify: bool = True,
        class_names: Sequence[str] | None = None,
    ):
        csv_path = Path(csv_path)
        rows = self._read_rows(csv_path)
        classes = list(class_names) if class_names is not None else self._classes_of({label for _, label, _ in rows})
        super().__init__(classes, transform, skip_bad)
        base = Path(root) if root is not None else csv_path.parent
        for path, label, line in rows:
            where = f"{csv_path} line {line}"
            self._add(base / path, self._label_index(label, where), where, verify)
        self._require_items(csv_path)
        self.root = base

    @staticmethod
    def _read_rows(csv_path: Path) -> list[tuple[str, str, int]]:
        if not csv_path.is_file():
            raise FileNotFoundError(f"CSV file {csv_path} not found")
        rows = []
        with open(csv_path, newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.reader(handle), start=1):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if line == 1 and [c.strip().lower() for c in row] == ["path", "label"]:
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip():
                    raise ValueError(f"{csv_path} line {line}: expected 'path,label', got {row}")
                rows.append((row[0].strip(), row[1].strip(), line))
        if not rows:
            raise ValueError(f"{csv_path} lists no images; expected rows of 'path,label'")
        return rows

    @staticmethod
    def _classes_of(labels: set[str]) -> list[str]:
        """Sorted names, or "0".."max" when every label is a number."""
        if all(label.isdigit() for label in labels):
            return [str(i) for i in range(max(int(label) for label in labels) + 1)]
        return sorted(labels)

    def _label_index(self, label: str, where: str) -> int:
        if label in self.classes:
            return self.classes.index(label)
        if label.isdigit() and int(label) < len(self.classes):
            return int(label)
        raise ValueError(f"{where}: unknown label {label!r}; known classes: {self.classes}")
