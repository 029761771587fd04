"""DNA sequence normalisation, reverse complement and the DNABERT k-mer tokenizer."""

import itertools
import random

import pytest
import torch

from polyformer.bio.sequence import SequenceError, normalize_sequence, reverse_complement
from polyformer.bio.tokenizer import KmerTokenizer, kmer_vocabulary

# DNABERT's own 3-mer vocab.txt starts like this (jerryji1993/DNABERT, dnabert-config/bert-config-3)
DNABERT_3MER_HEAD = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "AAA", "AAT", "AAC", "AAG", "ATA", "ATT", "ATC"]


def random_sequence(rng: random.Random, length: int, k: int) -> str:
    """Random bases in mixed case with N runs that have at least k bases between them and the ends,
    so every base lies in some k-mer without an N (the tokenizer's exact round-trip condition)."""
    bases, since_n, seen_n = [], 0, False
    for _ in range(length):
        if since_n >= k and rng.random() < 0.05:
            bases.extend("N" * rng.randint(1, 4))
            since_n, seen_n = 0, True
        else:
            bases.append(rng.choice("ACGTacgt"))
            since_n += 1
    while seen_n and since_n < k:
        bases.append(rng.choice("ACGTacgt"))
        since_n += 1
    return "".join(bases)


def test_normalisation_rule():
    assert normalize_sequence("acgtACGTu") == "ACGTACGTT"  # soft-masked bases read as bases, RNA U as T
    assert normalize_sequence("RYSWKMBDHVNryswkmbdhvn") == "N" * 22  # every IUPAC ambiguity code is N
    with pytest.raises(SequenceError, match=r"chr1: '-' at position 4 is not a nucleotide code"):
        normalize_sequence("ACG-T", record="chr1")
    with pytest.raises(SequenceError, match=r"'7' at position 1"):
        normalize_sequence("7ACG")
    with pytest.raises(SequenceError, match=r"' ' at position 3"):
        normalize_sequence("AC GT")


def test_reverse_complement_twice_is_identity():
    rng = random.Random(0)
    assert reverse_complement("AACGTN") == "NACGTT"
    for _ in range(50):
        seq = normalize_sequence(random_sequence(rng, rng.randint(0, 80), 3))
        assert reverse_complement(reverse_complement(seq)) == seq


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_vocabulary_is_dnaberts(k):
    vocab = kmer_vocabulary(k)
    assert len(vocab) == 4**k + 5 and vocab[:5] == DNABERT_3MER_HEAD[:5]
    assert vocab[5:] == ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    if k == 3:
        assert vocab[: len(DNABERT_3MER_HEAD)] == DNABERT_3MER_HEAD


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_overlapping_round_trip_on_random_sequences_with_n_and_lowercase(k):
    tokenizer = KmerTokenizer(k)
    rng = random.Random(k)
    for _ in range(100):
        seq = random_sequence(rng, rng.randint(k, 120), k)
        ids = tokenizer.encode(seq)
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id and len(ids) == len(seq) - k + 3
        assert "N" not in seq or tokenizer.unk_id in ids
        assert tokenizer.decode(ids) == normalize_sequence(seq)


def test_kmers_with_n_are_unknown_and_a_base_only_unknowns_cover_decodes_as_n():
    tokenizer = KmerTokenizer(3)
    ids = tokenizer.tokenize("ACGTNACGT")
    assert [tokenizer.vocabulary[i] for i in ids] == ["ACG", "CGT", "[UNK]", "[UNK]", "[UNK]", "ACG", "CGT"]
    assert tokenizer.decode(tokenizer.tokenize("ANA")) == "NNN"  # the documented loss: A only inside [UNK]


def test_non_overlapping_kmers():
    tokenizer = KmerTokenizer(3, overlapping=False)
    ids = tokenizer.tokenize("ACGTTTNAC")
    assert [tokenizer.vocabulary[i] for i in ids] == ["ACG", "TTT", "[UNK]"]
    assert tokenizer.decode(ids) == "ACGTTTNNN"
    with pytest.raises(ValueError, match="multiple of 3, got 4"):
        tokenizer.tokenize("ACGT")


def test_batches_pad_and_truncate():
    tokenizer = KmerTokenizer(4)
    batch = tokenizer.encode_batch(["ACGTACGT", "ACGTA"], max_tokens=4)
    assert batch.input_ids.shape == (2, 4) and batch.lengths == [4, 4]
    batch = tokenizer.encode_batch(["ACGTACGT", "ACGTA"])
    assert batch.lengths == [7, 4] and batch.input_ids[1, 4:].eq(tokenizer.pad_id).all()
    assert torch.equal(batch.attention_mask, batch.input_ids.ne(tokenizer.pad_id))
    with pytest.raises(SequenceError, match="reads.fa record 2: 'X' at position 3"):
        tokenizer.encode_batch(["ACGTA", "ACXT"], records=["reads.fa record 1", "reads.fa record 2"])


def test_vocab_file_round_trip_and_bad_files(tmp_path):
    tokenizer = KmerTokenizer(5)
    tokenizer.save(tmp_path)
    loaded = KmerTokenizer.load(tmp_path)
    assert loaded.k == 5 and loaded.vocabulary == tokenizer.vocabulary
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:6] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                                     "AAAAA"]  # fmt: skip
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\nworld\n")
    with pytest.raises(ValueError, match="not a 5-mer vocabulary"):
        KmerTokenizer.load(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="give a DNABERT vocab.txt"):
        KmerTokenizer.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="k must be between 3 and 6"):
        KmerTokenizer(7)
