"""DNA data in the formats people have: FASTA, FASTQ and GenBank (through Biopython's ``SeqIO``,
gzipped or not), windows over long records, and labelled ``sequence,label`` CSV files (the
DNABERT-2 fine-tuning format).

Every sequence goes through :func:`~polyformer.bio.sequence.normalize_sequence`. Bad input gets
one message naming the file and the record (or the CSV line): an unreadable or malformed file, an
empty file, a record with a character that is not a nucleotide code, a CSV row without a label.
With ``skip_bad=True`` bad records and rows are skipped and counted instead (a file with nothing
usable left is still an error).
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..sequence import SequenceError, normalize_sequence

__all__ = [
    "LabeledSequences",
    "SequenceDataError",
    "SequenceRecords",
    "read_labeled_csv",
    "read_sequences",
    "sequence_format",
    "sliding_windows",
]

FORMATS = {
    ".fa": "fasta", ".fasta": "fasta", ".fna": "fasta", ".fas": "fasta", ".ffn": "fasta",
    ".fq": "fastq", ".fastq": "fastq",
    ".gb": "genbank", ".gbk": "genbank", ".genbank": "genbank", ".gbff": "genbank",
}  # fmt: skip


class SequenceDataError(ValueError):
    """A DNA data file that cannot be used; the message names the file and the record or line."""


@dataclass
class SequenceRecords:
    """Records read from a sequence file: ids, normalised sequences, and what was skipped."""

    ids: list[str]
    sequences: list[str]
    skipped: list[str] = field(default_factory=list)  # one message per skipped record


@dataclass
class LabeledSequences:
    """Rows of a ``sequence,label`` file: normalised sequences, their labels, and what was skipped."""

    sequences: list[str]
    labels: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted(set(self.labels))


def sequence_format(path: str | Path) -> str:
    """``fasta``, ``fastq`` or ``genbank`` from the file name (a ``.gz`` suffix is looked through)."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise SequenceDataError(f"{path}: unknown sequence format; name the file with one of {known} (optionally .gz)")
    return FORMATS[suffixes[-1]]


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_sequences(path: str | Path, skip_bad: bool = False) -> SequenceRecords:
    """Every record of a FASTA, FASTQ or GenBank file (gzipped or not).

    Raises:
        SequenceDataError: missing, unreadable, malformed or empty file; a record with a
            character that is not a nucleotide code (unless ``skip_bad``); nothing usable left.
    """
    from Bio import SeqIO

    path = Path(path)
    if not path.is_file():
        raise SequenceDataError(f"{path}: no such file")
    fmt = sequence_format(path)
    out = SequenceRecords([], [])
    number = 0
    try:
        with _open_text(path) as handle:
            for number, record in enumerate(SeqIO.parse(handle, fmt), start=1):
                name = f"{path} record {number} ({record.id})"
                try:
                    out.sequences.append(normalize_sequence(str(record.seq), name))
                    out.ids.append(record.id)
                except SequenceError as err:
                    if not skip_bad:
                        raise SequenceDataError(f"{err} (use --skip-bad to skip such records)") from None
                    out.skipped.append(str(err))
    except SequenceDataError:
        raise
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as err:  # Biopython: malformed input is a ValueError
        raise SequenceDataError(f"{path}: not a readable {fmt} file (after record {number}): {err}") from err
    if not out.sequences:
        what = "holds no records" if number == 0 else "has no usable record"
        raise SequenceDataError(f"{path}: {what}")
    return out


def sliding_windows(sequence: str, length: int, overlap: int = 0) -> list[tuple[int, str]]:
    """``(start, window)`` pairs of ``length`` bases, each starting ``length - overlap`` after the last;
    the last window ends at the sequence's end (it may overlap its neighbour more). A sequence
    shorter than ``length`` is one window."""
    if length < 1 or not 0 <= overlap < length:
        raise ValueError(f"need length >= 1 and 0 <= overlap < length, got length {length}, overlap {overlap}")
    if len(sequence) <= length:
        return [(0, sequence)]
    step = length - overlap
    starts = list(range(0, len(sequence) - length + 1, step))
    if starts[-1] + length < len(sequence):
        starts.append(len(sequence) - length)
    return [(s, sequence[s : s + length]) for s in starts]


def read_labeled_csv(path: str | Path, skip_bad: bool = False) -> LabeledSequences:
    """A CSV (or TSV) with ``sequence`` and ``label`` columns (other columns are ignored).

    Raises:
        SequenceDataError: missing or empty file, missing columns, a row with a bad base or no
            label (naming the line, unless ``skip_bad``), nothing usable left.
    """
    path = Path(path)
    if not path.is_file():
        raise SequenceDataError(f"{path}: no such file")
    with _open_text(path) as handle:
        text = handle.read()
    if not text.strip():
        raise SequenceDataError(f"{path}: the file is empty")
    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "sequence" not in columns or "label" not in columns:
        raise SequenceDataError(f"{path}: needs a header with 'sequence' and 'label' columns, got {reader.fieldnames}")
    out = LabeledSequences([], [])
    for row in reader:
        line = reader.line_num
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{path} line {line}"
        try:
            if not values.get("label"):
                raise SequenceDataError(f"{where}: the row has no label")
            if not values.get("sequence"):
                raise SequenceDataError(f"{where}: the row has no sequence")
            sequence = normalize_sequence(values["sequence"], where)
        except (SequenceError, SequenceDataError) as err:
            if not skip_bad:
                raise SequenceDataError(f"{err} (use --skip-bad to skip such rows)") from None
            out.skipped.append(str(err))
            continue
        out.sequences.append(sequence)
        out.labels.append(values["label"])
    if not out.sequences:
        raise SequenceDataError(f"{path}: no usable rows")
    return out
