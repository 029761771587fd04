"""Reverse-complement augmentation and strand-symmetric averaged prediction."""

import random

import pytest
import torch

from polyformer.bio.sequence import reverse_complement
from polyformer.bio.strand import rc_augment, rc_average
from polyformer.bio.tokenizer import KmerTokenizer
from polyformer.core import EncoderConfig, EncoderForSequenceClassification


@pytest.fixture(scope="module")
def classifier():
    tokenizer = KmerTokenizer(3)
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=tokenizer.vocab_size, d_model=32, num_heads=2, num_layers=2, d_ff=64,
                           num_labels=3, dropout=0.0)  # fmt: skip
    model = EncoderForSequenceClassification(config).eval()

    @torch.no_grad()
    def predict(sequences):
        batch = tokenizer.encode_batch(sequences)
        return model(batch.input_ids, batch.attention_mask).softmax(-1)

    return predict


def test_rc_averaged_prediction_is_exactly_strand_symmetric(classifier):
    rng = random.Random(0)
    sequences = ["".join(rng.choice("ACGT") for _ in range(rng.randint(20, 60))) for _ in range(8)]
    plain, flipped = classifier(sequences), classifier([reverse_complement(s) for s in sequences])
    assert not torch.allclose(plain, flipped)  # the model alone is not symmetric
    averaged = rc_average(classifier, sequences)
    assert torch.equal(averaged, rc_average(classifier, [reverse_complement(s) for s in sequences]))
    assert torch.allclose(averaged.sum(-1), torch.ones(8))
    assert torch.equal(rc_average(classifier, ["acgtnACGTTTGCA"]), rc_average(classifier, ["ACGTNACGTTTGCA"]))


def test_rc_augment_flips_about_the_given_share():
    rng = random.Random(1)
    sequences = ["AACCGGTTAC"] * 1000
    out = rc_augment(sequences, rng)
    flipped = sum(s == reverse_complement(sequences[0]) for s in out)
    assert 400 < flipped < 600 and set(out) == {sequences[0], reverse_complement(sequences[0])}
    assert rc_augment(["acgu"], rng, probability=0.0) == ["ACGT"]
    assert rc_augment(["AACG"], rng, probability=1.0) == ["CGTT"]
    with pytest.raises(ValueError, match="probability must be in"):
        rc_augment(["A"], rng, probability=1.5)
