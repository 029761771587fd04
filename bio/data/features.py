"""Windows labelled from GenBank features: for example coding vs non-coding.

A GenBank record's features (``CDS``, ``tRNA``, ...) mark intervals of its sequence. A window over the
record gets the label "inside" when at least ``min_fraction`` of its bases lie in one of the chosen
feature types (on either strand), else the label "outside". With the default ``CDS`` features and
labels this gives the coding / non-coding task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sequence import SequenceError, normalize_sequence
from .readers import SequenceDataError, _open_text, sequence_format, sliding_windows

__all__ = ["AnnotatedRecord", "LabeledWindow", "label_windows", "read_annotated"]


@dataclass
class AnnotatedRecord:
    """One GenBank record: id, normalised sequence, and where the chosen features cover it."""

    id: str
    sequence: str
    covered: np.ndarray  # (len(sequence),) bool: True where a chosen feature lies

    @property
    def covered_fraction(self) -> float:
        return float(self.covered.mean()) if len(self.covered) else 0.0


@dataclass(frozen=True)
class LabeledWindow:
    """A window of a record with its label."""

    record: str
    start: int  # 0-based offset of the window in the record
    sequence: str
    label: str


def read_annotated(path: str | Path, feature_types: tuple[str, ...] = ("CDS",)) -> list[AnnotatedRecord]:
    """Every record of a GenBank file (gzipped or not) with the coverage of its ``feature_types``.

    Raises:
        SequenceDataError: not a GenBank file, unreadable, malformed or empty; a record with a
            character that is not a nucleotide code; no record has any of ``feature_types``.
    """
    from Bio import SeqIO

    path = Path(path)
    if not path.is_file():
        raise SequenceDataError(f"{path}: no such file")
    if sequence_format(path) != "genbank":
        raise SequenceDataError(f"{path}: feature labels need a GenBank file (.gb, .gbk, .gbff), not FASTA/FASTQ")
    records: list[AnnotatedRecord] = []
    try:
        with _open_text(path) as handle:
            for number, record in enumerate(SeqIO.parse(handle, "genbank"), start=1):
                sequence = normalize_sequence(str(record.seq), f"{path} record {number} ({record.id})")
                covered = np.zeros(len(sequence), dtype=bool)
                for feature in record.features:
                    if feature.type in feature_types:
                        for part in feature.location.parts:  # joins (split genes) cover each part
                            covered[int(part.start) : int(part.end)] = True
                records.append(AnnotatedRecord(record.id, sequence, covered))
    except SequenceError as err:
        raise SequenceDataError(str(err)) from None
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as err:
        raise SequenceDataError(f"{path}: not a readable GenBank file: {err}") from err
    if not records:
        raise SequenceDataError(f"{path}: holds no records")
    if not any(r.covered.any() for r in records):
        raise SequenceDataError(f"{path}: no record has a {' or '.join(feature_types)} feature to label windows by")
    return records


def label_windows(
    record: AnnotatedRecord,
    length: int,
    overlap: int = 0,
    min_fraction: float = 0.5,
    labels: tuple[str, str] = ("coding", "non-coding"),
) -> list[LabeledWindow]:
    """The record's windows (as :func:`~polyformer.bio.data.sliding_windows`), each labelled
    ``labels[0]`` when at least ``min_fraction`` of its bases are covered, else ``labels[1]``."""
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    covered = np.concatenate([[0], np.cumsum(record.covered, dtype=np.int64)])  # prefix sums: O(1) per window
    out = []
    for start, window in sliding_windows(record.sequence, length, overlap):
        fraction = (covered[start + len(window)] - covered[start]) / len(window)
        out.append(LabeledWindow(record.id, start, window, labels[0] if fraction >= min_fraction else labels[1]))
    return out
