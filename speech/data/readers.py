"""Readers for the audio datasets people have: audio folders with a ``metadata.csv``, JSONL manifests, bare folders.

Every reader only indexes the clips: it checks that each named file exists and has an audio suffix
(:data:`polyformer.speech.audio.AUDIO_SUFFIXES`), and leaves decoding to the loader
(:func:`check_audio_files` decodes them all up front, if you want that). A bad row (a missing or non-audio
file, an empty transcription, malformed JSON, a missing key, a wrong number of CSV fields) is a
:class:`SpeechDataError` naming the file and the line, or, with ``skip_bad=True``, skipped and recorded in the
result's ``skipped`` list as ``(file, line, reason)``. A missing folder, a labelled folder without
``metadata.csv`` and a CSV without the needed columns are always errors, and so is an empty result.

- :func:`read_audio_dataset`: one dataset, from
  (a) a folder with a ``metadata.csv`` in Hugging Face's audiofolder layout: a header naming ``file_name``
  (relative to the CSV's folder) and ``transcription`` (or ``text`` or ``sentence``); other columns are kept
  in :attr:`AudioClips.extra`;
  (b) a ``.jsonl`` manifest: one object per line with ``audio`` (a path relative to the manifest's folder, or
  absolute) and ``text``; other keys are kept in ``extra``;
  (c) with ``labelled=False``: any folder (every audio file in it, recursively, sorted) or either of the above
  with the texts ignored.
- :func:`read_audio_splits`: a folder with ``train/`` and ``test/`` (and optionally ``validation/``)
  subfolders, each read as above, by split name; any other dataset is returned as ``{"train": ...}``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyformer.speech.audio import AUDIO_SUFFIXES, AudioError, load_audio

__all__ = [
    "METADATA_FILE",
    "SPLIT_NAMES",
    "TRANSCRIPTION_COLUMNS",
    "AudioClips",
    "SpeechDataError",
    "check_audio_files",
    "read_audio_dataset",
    "read_audio_splits",
]

METADATA_FILE = "metadata.csv"
FILE_COLUMN = "file_name"
#: Accepted names of the transcription column, in order of preference.
TRANSCRIPTION_COLUMNS = ("transcription", "text", "sentence")
AUDIO_KEY, TEXT_KEY = "audio", "text"
SPLIT_NAMES = ("train", "validation", "test")


class SpeechDataError(ValueError):
    """An audio dataset that cannot be used; the message names the file and, where there is one, the line."""


@dataclass
class AudioClips:
    """Audio files with their transcriptions (None when unlabelled) and any further metadata columns.

    ``skipped`` lists ``(file, line, reason)`` for each entry left out with ``skip_bad=True``; ``line`` is 0
    where there is no line (an undecodable file found by :func:`check_audio_files`).
    """

    paths: list[Path]
    texts: list[str] | None
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)
    source: Path | None = None  # the metadata.csv or manifest the clips were listed in (None: a scanned folder)
    lines: list[int] = field(default_factory=list)  # each clip's line in ``source`` (empty for a scanned folder)

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Sequence[int], skipped: list[tuple[str, int, str]] | None = None) -> AudioClips:
        """The clips at ``indices`` (in that order) with all they carry; ``skipped`` replaces the skipped list."""
        return AudioClips(
            [self.paths[i] for i in indices],
            None if self.texts is None else [self.texts[i] for i in indices],
            self.skipped if skipped is None else skipped,
            {key: [values[i] for i in indices] for key, values in self.extra.items()},
            self.source,
            [self.lines[i] for i in indices] if self.lines else [],
        )

    def where(self, index: int) -> tuple[str, int]:
        """Where clip ``index`` was listed: ``(index file, line)``, or ``(audio file, 0)`` without an index file."""
        if self.source is not None and self.lines:
            return str(self.source), self.lines[index]
        return str(self.paths[index]), 0


def _where(file: str | Path, line: int) -> str:
    return f"{file}, line {line}" if line else str(file)


class _Collector:
    """Accumulates kept entries; a bad one raises, or with ``skip_bad`` is recorded in ``skipped``."""

    def __init__(self, source: Path, *, labelled: bool, skip_bad: bool):
        self.source, self.labelled, self.skip_bad = source, labelled, skip_bad
        self.paths: list[Path] = []
        self.texts: list[str] = []
        self.extra: dict[str, list[str]] = {}
        self.skipped: list[tuple[str, int, str]] = []
        self.lines: list[int] = []

    def bad(self, line: int, reason: str) -> None:
        if not self.skip_bad:
            raise SpeechDataError(f"{_where(self.source, line)}: {reason}")
        self.skipped.append((str(self.source), line, reason))

    def add(self, line: int, name: str, text: str | None, extra: dict[str, str]) -> None:
        """Check one entry (``name`` relative to the source's folder, or absolute) and keep it if it is good."""
        reason = _audio_file_problem(name, self.source.parent / name)
        if reason is None and self.labelled and not (text or "").strip():
            reason = f"empty transcription for '{name}'"
        if reason is not None:
            self.bad(line, reason)
            return
        self.paths.append(self.source.parent / name)
        self.texts.append((text or "").strip())
        self.lines.append(line)
        for key in extra.keys() - self.extra.keys():
            self.extra[key] = [""] * (len(self.paths) - 1)
        for key, values in self.extra.items():
            values.append(extra.get(key, ""))

    def result(self) -> AudioClips:
        if not self.paths:
            raise SpeechDataError(f"no audio clips in {self.source}{_skipped_note(self.skipped)}")
        texts = self.texts if self.labelled else None
        return AudioClips(self.paths, texts, self.skipped, self.extra, self.source, self.lines)


def _skipped_note(skipped: list[tuple[str, int, str]]) -> str:
    if not skipped:
        return ""
    file, line, reason = skipped[0]
    return f" (all {len(skipped)} entries were bad; the first: {_where(file, line)}: {reason})"


def _audio_file_problem(name: str, path: Path) -> str | None:
    """Why ``path`` (written ``name`` in the index) cannot be a clip, or None if it can."""
    if not name.strip():
        return "empty file name"
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        return f"file '{name}' is not an audio file (expected one of {', '.join(AUDIO_SUFFIXES)})"
    if not path.is_file():
        return f"file '{name}' does not exist"
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpeechDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise SpeechDataError(f"{path}: cannot read ({err.strerror})") from err


def _transcription_column(header: list[str], path: Path, labelled: bool) -> str | None:
    """The header's transcription column (None if unlabelled and there is none); checks ``file_name`` too."""
    if FILE_COLUMN not in header:
        raise SpeechDataError(f"{path}: no '{FILE_COLUMN}' column in the header (found: {', '.join(header)})")
    column = next((name for name in TRANSCRIPTION_COLUMNS if name in header), None)
    if column is None and labelled:
        wanted = " or ".join(f"'{name}'" for name in TRANSCRIPTION_COLUMNS)
        raise SpeechDataError(f"{path}: no transcription column ({wanted}) in the header (found: {', '.join(header)})")
    return column


def _read_metadata_csv(path: Path, *, labelled: bool, skip_bad: bool) -> AudioClips:
    rows = csv.reader(_read_text(path).splitlines(keepends=True))
    try:
        header = [name.strip() for name in next(rows)]
    except StopIteration:
        raise SpeechDataError(f"{path}: empty file, expected a header with '{FILE_COLUMN}'") from None
    except csv.Error as err:
        raise SpeechDataError(f"{path}, line 1: malformed CSV ({err})") from err
    text_column = _transcription_column(header, path, labelled)
    extra_columns = [name for name in header if name not in (FILE_COLUMN, text_column)]
    collector = _Collector(path, labelled=labelled, skip_bad=skip_bad)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as err:
            collector.bad(rows.line_num, f"malformed CSV ({err})")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            collector.bad(rows.line_num, f"expected {len(header)} fields, got {len(row)}")
            continue
        record = dict(zip(header, row))
        text = record[text_column] if text_column else None
        collector.add(rows.line_num, record[FILE_COLUMN].strip(), text, {k: record[k] for k in extra_columns})
    return collector.result()


def _jsonl_records(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            yield number, line


def _read_jsonl(path: Path, *, labelled: bool, skip_bad: bool) -> AudioClips:
    collector = _Collector(path, labelled=labelled, skip_bad=skip_bad)
    for number, line in _jsonl_records(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            collector.bad(number, f"malformed JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(record, dict):
            collector.bad(number, f"expected a JSON object, got {type(record).__name__}")
            continue
        needed = (AUDIO_KEY, TEXT_KEY) if labelled else (AUDIO_KEY,)
        missing = [key for key in needed if key not in record]
        if missing:
            collector.bad(number, f"missing key '{missing[0]}'")
            continue
        wrong = [key for key in needed if not isinstance(record[key], str)]
        if wrong:
            collector.bad(number, f"'{wrong[0]}' must be a string, got {type(record[wrong[0]]).__name__}")
            continue
        extra = {key: _as_text(value) for key, value in record.items() if key not in (AUDIO_KEY, TEXT_KEY)}
        collector.add(number, record[AUDIO_KEY].strip(), record.get(TEXT_KEY) if labelled else None, extra)
    return collector.result()


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _scan_folder(folder: Path) -> AudioClips:
    """Every audio file under ``folder`` (hidden files and folders left out), sorted by path."""
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not paths:
        raise SpeechDataError(f"no audio clips in {folder} (looked for {', '.join(AUDIO_SUFFIXES)} files)")
    return AudioClips(paths, None)


def read_audio_dataset(path: str | Path, *, labelled: bool = True, skip_bad: bool = False) -> AudioClips:
    """Index one audio dataset: a folder with ``metadata.csv``, a ``.jsonl`` manifest or (unlabelled) any folder.

    A ``.csv`` file in the metadata.csv format may also be given directly.

    Raises:
        SpeechDataError: the dataset is missing or malformed, or holds no usable clip; the message names the
            file and, for a bad row, the line (bad rows are skipped instead with ``skip_bad=True``).
    """
    path = Path(path)
    if path.is_dir():
        metadata = path / METADATA_FILE
        if metadata.is_file():
            return _read_metadata_csv(metadata, labelled=labelled, skip_bad=skip_bad)
        if labelled:
            raise SpeechDataError(
                f"{path}: no {METADATA_FILE} (a labelled audio folder needs one with "
                f"'{FILE_COLUMN}' and 'transcription' columns)"
            )
        return _scan_folder(path)
    if not path.exists():
        raise SpeechDataError(f"{path}: no such folder or file")
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path, labelled=labelled, skip_bad=skip_bad)
    if path.suffix.lower() == ".csv":
        return _read_metadata_csv(path, labelled=labelled, skip_bad=skip_bad)
    raise SpeechDataError(f"{path}: expected a folder (with {METADATA_FILE}) or a .jsonl manifest")


def read_audio_splits(path: str | Path, *, labelled: bool = True, skip_bad: bool = False) -> dict[str, AudioClips]:
    """Splits by name from a folder with ``train/`` and ``test/`` (and optionally ``validation/``) subfolders.

    Each split folder is read with :func:`read_audio_dataset`; a dataset without split subfolders is returned
    whole as ``{"train": ...}``.

    Raises:
        SpeechDataError: as :func:`read_audio_dataset`, or only some of the split folders are there.
    """
    path = Path(path)
    present = [name for name in SPLIT_NAMES if (path / name).is_dir()]
    if "train" in present and "test" in present:
        return {name: read_audio_dataset(path / name, labelled=labelled, skip_bad=skip_bad) for name in present}
    if present and labelled and not (path / METADATA_FILE).is_file():
        raise SpeechDataError(
            f"{path}: split folders need both train/ and test/ (found only {', '.join(f'{p}/' for p in present)})"
        )
    return {"train": read_audio_dataset(path, labelled=labelled, skip_bad=skip_bad)}


def check_audio_files(clips: AudioClips, skip_bad: bool = False) -> AudioClips:
    """Decode every clip with :func:`load_audio`; an undecodable or empty one raises, or is dropped and recorded.

    Raises:
        SpeechDataError: a clip cannot be decoded (the message names the file), or none can.
    """
    keep: list[int] = []
    skipped = list(clips.skipped)
    for index, path in enumerate(clips.paths):
        try:
            load_audio(path)
        except AudioError as err:
            if not skip_bad:
                raise SpeechDataError(str(err)) from err
            skipped.append((str(path), 0, str(err).removeprefix(f"{path}: ")))
            continue
        keep.append(index)
    if not keep:
        note = _skipped_note(skipped[len(clips.skipped) :])
        raise SpeechDataError(f"no decodable audio clips among the {len(clips)} given{note}")
    return clips.select(keep, skipped)
