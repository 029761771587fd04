"""Readers for the text formats people have: plain text, ``text,label`` CSV, and sentence pairs (TSV / JSONL).

Every reader checks that the file is UTF-8 and well formed. A bad line (invalid UTF-8, a wrong
column count, an empty text, malformed JSON) is a :class:`TextDataError` naming the file and the
line, or, with ``skip_bad=True``, skipped and recorded in the result's ``skipped`` list as
``(line number, reason)``. An empty result is always an error.

- :func:`read_texts`: one document per line of a ``.txt`` file (blank lines skipped), or one per
  file for a folder of ``.txt`` files.
- :func:`read_labeled`: a CSV (or TSV) with a header naming the ``text`` and ``label`` columns.
- :func:`read_pairs`: sentence pairs from a TSV (two columns, ``source<TAB>target``, with an
  optional ``source  target`` header) or a JSONL file (objects with ``source`` and ``target``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LabeledTexts", "SentencePairs", "TextDataError", "TextLines", "read_labeled", "read_pairs", "read_texts"]


class TextDataError(ValueError):
    """A text data file that cannot be used; the message names the file and, where there is one, the line."""


@dataclass
class TextLines:
    """Documents read from text files."""

    texts: list[str]
    skipped: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, reason)


@dataclass
class LabeledTexts:
    """Texts with their labels, and the sorted label names."""

    texts: list[str]
    labels: list[str]
    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))


@dataclass
class SentencePairs:
    """Source and target sentences, one pair per index."""

    sources: list[str]
    targets: list[str]
    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)


def _lines(path: Path, skip_bad: bool, skipped: list) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a UTF-8 file; undecodable lines raise or are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"text data file {path} not found")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                _bad(path, number, f"not valid UTF-8 ({err.reason})", skip_bad, skipped)
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark
            yield number, text.rstrip("\r\n")


def _bad(path: Path, number: int, reason: str, skip_bad: bool, skipped: list) -> None:
    if not skip_bad:
        raise TextDataError(f"{path}, line {number}: {reason} (use --skip-bad to skip such lines)")
    skipped.append((str(path), number, reason))


def _nonempty(result_size: int, path: Path, what: str) -> None:
    if result_size == 0:
        raise TextDataError(f"{path} holds no {what}")


def read_texts(path: str | Path, skip_bad: bool = False) -> TextLines:
    """Documents: the non-blank lines of a text file, or the whole text of each ``.txt`` file in a folder.

    Raises:
        FileNotFoundError: no such file or folder.
        TextDataError: invalid UTF-8 (unless ``skip_bad``), or no text at all.
    """
    path = Path(path)
    result = TextLines([])
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        for file in files:
            text = "\n".join(line for _, line in _lines(file, skip_bad, result.skipped)).strip()
            if text:
                result.texts.append(text)
        _nonempty(len(result.texts), path, "non-empty .txt files")
        return result
    result.texts = [line.strip() for _, line in _lines(path, skip_bad, result.skipped) if line.strip()]
    _nonempty(len(result.texts), path, "text (every line is blank)")
    return result


def _rows(path: Path, delimiter: str, skip_bad: bool, skipped: list) -> Iterator[tuple[int, list[str]]]:
    for number, line in _lines(path, skip_bad, skipped):
        if not line.strip():
            continue
        try:
            (row,) = list(csv.reader(io.StringIO(line), delimiter=delimiter))
        except (csv.Error, ValueError) as err:
            _bad(path, number, f"malformed {'CSV' if delimiter == ',' else 'TSV'} line ({err})", skip_bad, skipped)
            continue
        yield number, row


def read_labeled(
    path: str | Path,
    skip_bad: bool = False,
    text_column: str = "text",
    label_column: str = "label",
    min_classes: int = 2,
) -> LabeledTexts:
    """Texts and labels from a CSV (``.tsv``: tab-separated) whose header names the two columns.

    ``min_classes`` is 2 for training data (one label cannot be learned); validation data may have one.

    Returns:
        A :class:`LabeledTexts`.

    Raises:
        FileNotFoundError: no such file.
        TextDataError: no header with both columns, a row with another number of columns or an
            empty text or label (unless ``skip_bad``), fewer than two classes, or no rows.
    """
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    result = LabeledTexts([], [])
    rows = _rows(path, delimiter, skip_bad, result.skipped)
    header_line, header = next(rows, (0, []))
    names = [name.strip().lower() for name in header]
    if text_column not in names or label_column not in names:
        raise TextDataError(
            f"{path}, line {header_line or 1}: the header must name a {text_column!r} and a {label_column!r} column, "
            f"got {header}"
        )
    text_at, label_at = names.index(text_column), names.index(label_column)
    for number, row in rows:
        if len(row) != len(header):
            _bad(path, number, f"{len(row)} columns, the header has {len(header)}", skip_bad, result.skipped)
            continue
        text, label = row[text_at].strip(), row[label_at].strip()
        if not text or not label:
            _bad(path, number, f"empty {'text' if not text else 'label'}", skip_bad, result.skipped)
            continue
        result.texts.append(text)
        result.labels.append(label)
    _nonempty(len(result.texts), path, "labelled rows")
    if len(result.classes) < min_classes:
        raise TextDataError(f"{path} has a single label ({result.classes[0]}); classification needs at least two")
    return result


def read_pairs(path: str | Path, skip_bad: bool = False) -> SentencePairs:
    """Sentence pairs from a ``.jsonl`` (``{"source": ..., "target": ...}`` per line) or a two-column TSV.

    Raises:
        FileNotFoundError: no such file.
        TextDataError: a malformed line or an empty side (unless ``skip_bad``), or no pairs.
    """
    path = Path(path)
    result = SentencePairs([], [])
    if path.suffix.lower() == ".jsonl":
        for number, line in _lines(path, skip_bad, result.skipped):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                pair = (item["source"], item["target"]) if isinstance(item, dict) else None
            except (json.JSONDecodeError, KeyError) as err:
                _bad(path, number, f"not a JSON object with 'source' and 'target' ({err})", skip_bad, result.skipped)
                continue
            _add_pair(result, pair, path, number, skip_bad)
    else:
        for number, row in _rows(path, "\t", skip_bad, result.skipped):
            if number == 1 and [cell.strip().lower() for cell in row] == ["source", "target"]:
                continue  # a header
            if len(row) != 2:
                _bad(path, number, f"{len(row)} tab-separated columns, expected 2 (source, target)", skip_bad,
                     result.skipped)  # fmt: skip
                continue
            _add_pair(result, (row[0], row[1]), path, number, skip_bad)
    _nonempty(len(result), path, "sentence pairs")
    return result


def _add_pair(result: SentencePairs, pair, path: Path, number: int, skip_bad: bool) -> None:
    if pair is None or not all(isinstance(side, str) for side in pair):
        _bad(path, number, "source and target must be strings", skip_bad, result.skipped)
        return
    source, target = pair[0].strip(), pair[1].strip()
    if not source or not target:
        _bad(path, number, f"empty {'source' if not source else 'target'}", skip_bad, result.skipped)
        return
    result.sources.append(source)
    result.targets.append(target)
