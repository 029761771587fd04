"""Learning test: a small encoder-decoder learns to reverse sequences, decoded by core generation."""

import pytest
import torch

from polyformer.apps.recipes.reversal import PAD, ReversalSettings, exact_match, make_batch, teacher_forcing_pair, train


def test_batches_are_reversals_with_right_padding():
    settings = ReversalSettings()
    src, tgt = make_batch(settings, 64, torch.Generator().manual_seed(0))
    for s, t in zip(src, tgt):
        n = int(s.ne(PAD).sum())
        assert settings.min_len <= n <= settings.max_len
        assert t[:n].tolist() == s[:n].flip(0).tolist()
        assert t[n:].eq(PAD).all()
    decoder_in, labels = teacher_forcing_pair(tgt[:1])
    n = int(tgt[0].ne(PAD).sum())
    assert decoder_in[0, 0] == 1 and labels[0, n] == 2


def test_encoder_decoder_learns_to_reverse_short_sequences():
    """The fast version: lengths 4-6 over 8 symbols, 300 steps (about 5 s here; 95.6% greedy, 96% beam)."""
    settings = ReversalSettings(steps=300, min_len=4, max_len=6, num_symbols=8, warmup=20, batch_size=64, lr=5e-3)
    model = train(settings)
    src, tgt = make_batch(settings, 500, torch.Generator().manual_seed(99))
    assert exact_match(model, src, tgt) >= 0.9
    assert exact_match(model, src[:100], tgt[:100], num_beams=4) >= 0.9


@pytest.mark.slow  # 700 steps of batch 128: 30 s on a native-bf16 CPU, about 6 min on a slow AVX2-only one
def test_encoder_decoder_learns_to_reverse_sequences():
    settings = ReversalSettings()
    model = train(settings)
    src, tgt = make_batch(settings, 1000, torch.Generator().manual_seed(99))
    greedy = exact_match(model, src, tgt)
    beam = exact_match(model, src[:200], tgt[:200], num_beams=4)
    assert greedy >= 0.99, greedy
    assert beam >= 0.99, beam
