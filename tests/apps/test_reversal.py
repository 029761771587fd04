"""Learning test: a small encoder-decoder learns to reverse sequences, decoded by core generation."""

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


def test_encoder_decoder_learns_to_reverse_sequences():
    settings = ReversalSettings()
    model = train(settings)
    src, tgt = make_batch(settings, 1000, torch.Generator().manual_seed(99))
    greedy = exact_match(model, src, tgt)
    beam = exact_match(model, src[:200], tgt[:200], num_beams=4)
    assert greedy >= 0.99, greedy
    assert beam >= 0.99, beam
