"""The shipped genome and splice-junction set, and windows labelled from GenBank features."""

import pytest

from polyformer.bio.data import (
    GENOME_PATH,
    SPLICE_TEST_PATH,
    SPLICE_TRAIN_PATH,
    SequenceDataError,
    label_windows,
    read_annotated,
    read_labeled_csv,
)

TWO_GENES = """LOCUS       TEST0002                  40 bp    DNA     linear   BCT 01-JAN-2000
DEFINITION  two genes.
ACCESSION   TEST0002
VERSION     TEST0002.1
FEATURES             Location/Qualifiers
     CDS             1..10
                     /gene="a"
     CDS             complement(join(21..25,31..35))
                     /gene="b"
     tRNA            36..40
ORIGIN
        1 acgtacgtac gtacgtacgt acgtacgtac gtacgtacgt
//
"""


def test_the_shipped_genome_is_the_whole_annotated_chlamydia_chromosome():
    (record,) = read_annotated(GENOME_PATH)
    assert len(record.sequence) == 1_042_519 and set(record.sequence) <= set("ACGTN")
    assert 0.85 < record.covered_fraction < 0.95  # a compact bacterial genome: about 90% coding


def test_the_shipped_splice_set_is_a_repeat_free_split_with_the_splice_consensus():
    train, test = read_labeled_csv(SPLICE_TRAIN_PATH), read_labeled_csv(SPLICE_TEST_PATH)
    assert (len(train.sequences), len(test.sequences)) == (2250, 750)
    assert train.classes == test.classes == ["EI", "IE", "N"]
    assert not set(train.sequences) & set(test.sequences)
    assert {len(s) for s in train.sequences + test.sequences} == {60}
    donors = [s for s, label in zip(test.sequences, test.labels) if label == "EI"]
    acceptors = [s for s, label in zip(test.sequences, test.labels) if label == "IE"]
    assert sum(s[30:32] == "GT" for s in donors) / len(donors) > 0.95
    assert sum(s[28:30] == "AG" for s in acceptors) / len(acceptors) > 0.95


def test_windows_are_labelled_by_their_covered_fraction(tmp_path):
    path = tmp_path / "two.gb"
    path.write_text(TWO_GENES)
    (record,) = read_annotated(path)
    coverage = "".join("x" if c else "." for c in record.covered)
    assert coverage == "x" * 10 + "." * 10 + "x" * 5 + "." * 5 + "x" * 5 + "." * 5
    windows = label_windows(record, length=10, overlap=0)
    assert [(w.start, w.label) for w in windows] == [(0, "coding"), (10, "non-coding"), (20, "coding"), (30, "coding")]
    strict = label_windows(record, length=10, min_fraction=0.6, labels=("in", "out"))
    assert [w.label for w in strict] == ["in", "out", "out", "out"]
    with_trna = read_annotated(path, feature_types=("CDS", "tRNA"))[0]
    assert with_trna.covered[35:].all()


def test_feature_labels_need_genbank_with_features(tmp_path):
    (tmp_path / "a.fa").write_text(">a\nACGT\n")
    with pytest.raises(SequenceDataError, match="need a GenBank file"):
        read_annotated(tmp_path / "a.fa")
    (tmp_path / "none.gb").write_text(TWO_GENES.replace("CDS ", "gene"))
    with pytest.raises(SequenceDataError, match="no record has a CDS feature"):
        read_annotated(tmp_path / "none.gb")
    (tmp_path / "bad.gb").write_text(TWO_GENES.replace("acgtacgtac gtacgtacgt acgt", "acgtacgtac gtacg!acgt acgt"))
    with pytest.raises(SequenceDataError, match="bad.gb"):
        read_annotated(tmp_path / "bad.gb")
    (record,) = read_annotated(tmp_path / "none.gb", feature_types=("tRNA",))
    with pytest.raises(ValueError, match="min_fraction"):
        label_windows(record, 10, min_fraction=0.0)
