"""DNA data: readers for FASTA, FASTQ, GenBank and ``sequence,label`` CSV files, windows over long
records, and windows labelled from GenBank features.

The shipped data lives beside this file, each made by a script here from a Debian package:

- :data:`GENOME_PATH`, the *Chlamydia trachomatis* genome (1.04 Mb, GenBank with its 895 coding
  sequences; ``make_genome.py``), for pretraining;
- :data:`SPLICE_TRAIN_PATH` and :data:`SPLICE_TEST_PATH`, the primate splice-junction set (60-nt
  sequences labelled EI / IE / N; a fixed, repeat-free split; ``make_splice_junctions.py``), for fine-tuning.
"""

from pathlib import Path

from .features import AnnotatedRecord, LabeledWindow, label_windows, read_annotated
from .readers import (
    LabeledSequences,
    SequenceDataError,
    SequenceRecords,
    read_labeled_csv,
    read_sequences,
    sequence_format,
    sliding_windows,
)

_HERE = Path(__file__).resolve().parent
GENOME_PATH = _HERE / "chlamydia_trachomatis.gbk.gz"
SPLICE_TRAIN_PATH = _HERE / "splice_train.csv.gz"
SPLICE_TEST_PATH = _HERE / "splice_test.csv.gz"

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("Path", "readers", "features")]
