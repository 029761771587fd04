"""DNA data: readers for FASTA, FASTQ, GenBank and ``sequence,label`` CSV files, and windows over long records."""

from .readers import (
    LabeledSequences,
    SequenceDataError,
    SequenceRecords,
    read_labeled_csv,
    read_sequences,
    sequence_format,
    sliding_windows,
)

__all__ = [name for name in dir() if not name.startswith("_") and name != "readers"]
