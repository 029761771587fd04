"""DNA byte-pair encoding (DNABERT-2's tokenizer): training, exact round trips, files, bad input."""

import random

import pytest

from polyformer.bio import DnaBpeTokenizer, KmerTokenizer, SequenceError, normalize_sequence
from polyformer.bio.tokenizer import SPECIAL_TOKENS


def _corpus(rng: random.Random, n: int = 200) -> list[str]:
    motifs = ["TATAAA", "GGGCGG", "CCAAT", "ATG", "TGA"]
    pick = lambda: rng.choice(motifs) if rng.random() < 0.4 else rng.choice("ACGT")  # noqa: E731
    return ["".join(pick() for _ in range(60)) for _ in range(n)]


def test_bpe_learns_words_and_round_trips_exactly_with_n_and_lowercase(tmp_path):
    rng = random.Random(0)
    tokenizer = DnaBpeTokenizer.train(_corpus(rng), vocab_size=120)
    assert 20 < tokenizer.vocab_size <= 120
    assert [tokenizer.tokenizer.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert len(tokenizer.tokenize("TATAAAGGGCGG")) <= 3  # frequent motifs became single tokens
    for _ in range(50):
        raw = "".join(rng.choice("ACGTacgtNNRY") for _ in range(rng.randint(1, 90)))
        ids = tokenizer.encode(raw)
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id and tokenizer.unk_id not in ids
        assert tokenizer.decode(ids) == normalize_sequence(raw)
    sequence = _corpus(rng, 1)[0]
    assert len(tokenizer.tokenize(sequence)) < len(KmerTokenizer(6).tokenize(sequence))
    tokenizer.save(tmp_path)
    again = DnaBpeTokenizer.load(tmp_path)
    batch, batch_again = tokenizer.encode_batch(["ACGT", sequence]), again.encode_batch(["ACGT", sequence])
    assert batch.input_ids.equal(batch_again.input_ids) and batch.attention_mask[0].sum() == batch.lengths[0]


def test_bpe_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="vocab_size must exceed 10"):
        DnaBpeTokenizer.train(["ACGT"], vocab_size=10)
    with pytest.raises(ValueError, match="no DNA"):
        DnaBpeTokenizer.train([""], vocab_size=50)
    tokenizer = DnaBpeTokenizer.train(["ACGTACGTTT"] * 5, vocab_size=20)
    with pytest.raises(SequenceError, match="read 7"):
        tokenizer.encode("ACGT-A", record="read 7")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        DnaBpeTokenizer.load(tmp_path)
