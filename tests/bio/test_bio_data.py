"""FASTA / FASTQ / GenBank and sequence,label CSV readers, windows, and their bad-input messages."""

import gzip

import pytest

from polyformer.bio.data import (
    SequenceDataError,
    read_labeled_csv,
    read_sequences,
    sequence_format,
    sliding_windows,
)

GENBANK = """LOCUS       TEST0001                  24 bp    DNA     linear   BCT 01-JAN-2000
DEFINITION  a test record.
ACCESSION   TEST0001
VERSION     TEST0001.1
FEATURES             Location/Qualifiers
     source          1..24
     CDS             4..15
                     /gene="abc"
ORIGIN
        1 acgtacgtac gtnnacgtac gtac
//
"""


def test_fasta_fastq_and_genbank_gzipped_or_not(tmp_path):
    (tmp_path / "a.fa").write_text(">one first\nACGTacgt\nNNRY\n>two\nuuaa\n")
    with gzip.open(tmp_path / "b.fastq.gz", "wt") as f:
        f.write("@r1\nACGT\n+\nIIII\n@r2\nTTGA\n+\nIIII\n")
    (tmp_path / "c.gbk").write_text(GENBANK)
    fasta = read_sequences(tmp_path / "a.fa")
    assert fasta.ids == ["one", "two"] and fasta.sequences == ["ACGTACGTNNNN", "TTAA"]
    assert read_sequences(tmp_path / "b.fastq.gz").sequences == ["ACGT", "TTGA"]
    genbank = read_sequences(tmp_path / "c.gbk")
    assert genbank.ids == ["TEST0001.1"] and genbank.sequences == ["ACGTACGTACGTNNACGTACGTAC"]


def test_bad_files_name_the_file_and_record(tmp_path):
    (tmp_path / "empty.fa").write_text("")
    with pytest.raises(SequenceDataError, match="empty.fa: holds no records"):
        read_sequences(tmp_path / "empty.fa")
    (tmp_path / "bad.fa").write_text(">ok\nACGT\n>broken\nAC-GT\n")
    with pytest.raises(SequenceDataError, match=r"bad.fa record 2 \(broken\): '-' at position 3 .*--skip-bad"):
        read_sequences(tmp_path / "bad.fa")
    skipped = read_sequences(tmp_path / "bad.fa", skip_bad=True)
    assert skipped.ids == ["ok"] and len(skipped.skipped) == 1
    (tmp_path / "bad.fastq").write_text("@r1\nACGT\n+\nII\n")  # quality shorter than the sequence
    with pytest.raises(SequenceDataError, match="bad.fastq: not a readable fastq file"):
        read_sequences(tmp_path / "bad.fastq")
    (tmp_path / "x.txt").write_text(">a\nACGT\n")
    with pytest.raises(SequenceDataError, match="unknown sequence format"):
        read_sequences(tmp_path / "x.txt")
    with pytest.raises(SequenceDataError, match="no such file"):
        read_sequences(tmp_path / "missing.fa")
    assert sequence_format("genome.GBK.gz") == "genbank"


def test_sliding_windows_cover_the_record_to_its_end():
    seq = "ACGT" * 5  # 20 bases
    windows = sliding_windows(seq, 8, overlap=2)
    assert [s for s, _ in windows] == [0, 6, 12]
    assert windows[-1][1] == seq[12:] and all(len(w) == 8 for _, w in windows)
    assert [s for s, _ in sliding_windows(seq, 6)] == [0, 6, 12, 14]  # the last one ends at the end
    assert sliding_windows("ACG", 8) == [(0, "ACG")]
    with pytest.raises(ValueError, match="overlap < length"):
        sliding_windows(seq, 4, overlap=4)


def test_labeled_csv_and_its_bad_rows(tmp_path):
    good = tmp_path / "train.csv"
    good.write_text("sequence,label,source\nacgtACGT,EI,x\nTTTTNNNN,N,y\n")
    data = read_labeled_csv(good)
    assert data.sequences == ["ACGTACGT", "TTTTNNNN"] and data.labels == ["EI", "N"] and data.classes == ["EI", "N"]
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence,label\nACGT,EI\nACXT,IE\nACGT,\n")
    with pytest.raises(SequenceDataError, match=r"bad.csv line 3: 'X' at position 3"):
        read_labeled_csv(bad)
    kept = read_labeled_csv(bad, skip_bad=True)
    assert kept.labels == ["EI"] and len(kept.skipped) == 2 and "line 4: the row has no label" in kept.skipped[1]
    (tmp_path / "nolabel.csv").write_text("sequence,class\nACGT,EI\n")
    with pytest.raises(SequenceDataError, match="needs a header with 'sequence' and 'label' columns"):
        read_labeled_csv(tmp_path / "nolabel.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(SequenceDataError, match="empty.csv: the file is empty"):
        read_labeled_csv(tmp_path / "empty.csv")
