"""wav2vec 2.0: parity with transformers' Wav2Vec2ForCTC / Wav2Vec2ForPreTraining (random weights, both layouts),
the quantiser and losses on constructed cases, span masking, distractors and clear errors."""

import pytest
import torch
import transformers
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from polyformer.core import ctc_greedy_decode, ctc_loss
from polyformer.speech.wav2vec2 import (
    GumbelQuantizer,
    Wav2Vec2Config,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
    codebook_perplexity,
    load_hf_wav2vec2,
    sample_negatives,
    span_mask,
)
from polyformer.speech.wav2vec2.config import sized_config

LAYOUTS = {  # BASE: group norm, post-norm encoder; LARGE-LV60: layer norm after every conv, pre-norm encoder
    "base": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def _hf_config(layout: str, **changes) -> transformers.Wav2Vec2Config:
    fields = dict(
        hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12, pad_token_id=0,
        num_codevector_groups=2, num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=12,
        num_negatives=5, hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.2, mask_time_length=3,
    )  # fmt: skip
    return transformers.Wav2Vec2Config(**{**fields, **LAYOUTS[layout], **changes})


def _save(model, path):
    with torch.no_grad():  # random, not-quite-zero values everywhere (biases and norms included)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save_pretrained(path)
    return model.eval()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_ctc_model_matches_transformers_with_and_without_padding(tmp_path, layout):
    torch.manual_seed(0)
    reference = _save(transformers.Wav2Vec2ForCTC(_hf_config(layout)), tmp_path / "hf")
    ours = load_hf_wav2vec2(tmp_path / "hf")
    assert isinstance(ours, Wav2Vec2ForCTC) and ours.config.norm_first == (layout == "large")
    waveform = torch.randn(2, 2400)
    attention = torch.ones(2, 2400, dtype=torch.long)
    attention[1, 1500:] = 0
    waveform[1, 1500:] = 0.0
    for mask in (None, attention):
        with torch.no_grad():
            expected = reference(waveform, attention_mask=mask)
            expected_hidden = reference.wav2vec2(waveform, attention_mask=mask).last_hidden_state
            logits, lengths = ours(waveform, mask)
            hidden = ours.wav2vec2(waveform, mask).last_hidden_state
        real = slice(None) if mask is None else (slice(None), slice(0, int(lengths.min())))
        torch.testing.assert_close(logits[real], expected.logits[real], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(hidden[real], expected_hidden[real], atol=1e-4, rtol=1e-4)
    assert lengths.tolist() == [119, 74] == reference._get_feat_extract_output_lengths(attention.sum(-1)).tolist()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_pretraining_losses_match_transformers_given_the_same_mask_and_negatives(tmp_path, layout):
    torch.manual_seed(1)
    reference = _save(transformers.Wav2Vec2ForPreTraining(_hf_config(layout)), tmp_path / "hf")
    ours = load_hf_wav2vec2(tmp_path / "hf")
    assert isinstance(ours, Wav2Vec2ForPreTraining)
    waveform = torch.randn(2, 3200)
    frames = ours.wav2vec2.frame_lengths(torch.tensor([3200])).item()
    mask = torch.from_numpy(_compute_mask_indices((2, frames), mask_prob=0.3, mask_length=3, min_masks=2))
    negatives = torch.from_numpy(_sample_negative_indices((2, frames), 5, mask.numpy())).long()
    with torch.no_grad():
        expected = reference(waveform, mask_time_indices=mask, sampled_negative_indices=negatives)
        found = ours(waveform, time_mask=mask, negatives=negatives)
    masked = mask.sum()
    torch.testing.assert_close(found.projected_states, expected.projected_states, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found.projected_quantized, expected.projected_quantized_states, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found.perplexity, expected.codevector_perplexity, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found.contrastive_loss * masked, expected.contrastive_loss, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(found.diversity_loss * masked, expected.diversity_loss, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found.loss * masked, expected.loss, atol=1e-3, rtol=1e-4)


def test_ctc_loss_matches_transformers_and_greedy_decoding_collapses(tmp_path):
    torch.manual_seed(2)
    reference = _save(transformers.Wav2Vec2ForCTC(_hf_config("base", ctc_loss_reduction="mean")), tmp_path / "hf")
    ours = load_hf_wav2vec2(tmp_path / "hf")
    waveform = torch.randn(2, 2400)
    labels = torch.tensor([[3, 4, 4, 5], [6, 7, -100, -100]])
    with torch.no_grad():
        expected = reference(waveform, labels=labels).loss
        logits, lengths = ours(waveform)
    torch.testing.assert_close(ctc_loss(logits, lengths, labels, blank=0), expected, atol=1e-5, rtol=1e-5)
    frames = torch.full((1, 7, 5), -5.0)
    for t, best in enumerate([0, 2, 2, 0, 2, 3, 3]):
        frames[0, t, best] = 5.0
    assert ctc_greedy_decode(frames, blank=0) == [[2, 2, 3]]
    assert ctc_greedy_decode(frames, torch.tensor([3]), blank=0) == [[2]]


def test_ctc_loss_refuses_a_blank_label_and_frames_beyond_the_logits():
    logits = torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match="a label equals the blank class 0"):
        ctc_loss(logits, torch.tensor([5]), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="frame_lengths must be within"):
        ctc_loss(logits, torch.tensor([6]), torch.tensor([[1, 2]]))


def test_diversity_loss_is_zero_for_uniform_codebook_use_and_maximal_for_one_entry():
    groups, entries = 2, 8
    uniform = torch.full((10, groups, entries), 1.0 / entries)
    assert codebook_perplexity(uniform).item() == pytest.approx(groups * entries)
    one_entry = torch.nn.functional.one_hot(torch.zeros(10, groups, dtype=torch.long), entries).float()
    assert codebook_perplexity(one_entry).item() == pytest.approx(groups)
    mask = torch.tensor([True] * 5 + [False] * 5)
    mixed = torch.cat([uniform[:5], one_entry[:5]])
    assert codebook_perplexity(mixed, mask).item() == pytest.approx(groups * entries)  # only masked frames count


def _tiny_config(**changes) -> Wav2Vec2Config:
    fields = dict(d_model=32, num_heads=4, encoder_layers=2, d_ff=64, conv_dim=[16, 16, 16], conv_kernel=[10, 3, 3],
                  conv_stride=[5, 2, 2], pos_conv_kernel=16, pos_conv_groups=4, quantizer_entries=8,
                  codevector_dim=16, proj_codevector_dim=12, num_negatives=5, dropout=0.0, attention_dropout=0.0,
                  layer_drop=0.0)  # fmt: skip
    return Wav2Vec2Config(**{**fields, **changes})


def test_contrastive_loss_picks_the_true_target():
    torch.manual_seed(3)
    model = Wav2Vec2ForPreTraining(_tiny_config()).eval()
    waveform = torch.randn(1, 3200)
    frames = model.wav2vec2.frame_lengths(torch.tensor([3200]))
    mask = span_mask(frames, int(frames), 0.15, 3, generator=torch.Generator().manual_seed(0))
    negatives = sample_negatives(mask, 5, generator=torch.Generator().manual_seed(0))
    out = model(waveform, time_mask=mask, negatives=negatives)
    with torch.no_grad():  # make the predictions equal to the targets: the true one must win
        model.project_hid.weight.zero_()
        model.project_hid.bias.zero_()
    targets = out.projected_quantized.detach()
    model.project_hid.register_forward_hook(lambda module, args, result: targets)
    perfect = model(waveform, time_mask=mask, negatives=negatives)
    assert perfect.accuracy.item() == 1.0
    assert perfect.contrastive_loss.item() < out.contrastive_loss.item()


def test_a_distractor_from_another_clip_is_refused():
    torch.manual_seed(3)
    model = Wav2Vec2ForPreTraining(_tiny_config()).eval()
    waveform = torch.randn(2, 3200)
    frames = int(model.wav2vec2.frame_lengths(torch.tensor([3200])))
    mask = span_mask(torch.tensor([frames, frames]), frames, 0.15, 3, generator=torch.Generator().manual_seed(0))
    negatives = sample_negatives(mask, 5, generator=torch.Generator().manual_seed(0))
    model(waveform, time_mask=mask, negatives=negatives)  # distractors within each clip: fine
    first = int(mask[0].nonzero()[0])
    negatives[0, first, 0] = frames + int(mask[1].nonzero()[0])  # a masked frame of the second clip
    with pytest.raises(ValueError, match="own clip"):
        model(waveform, time_mask=mask, negatives=negatives)


def test_span_masking_rate_and_span_lengths():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.full((400,), 200)
    mask = span_mask(lengths, 200, 0.065, 10, min_spans=2, generator=generator)
    rate = mask.float().mean().item()
    # 13 expected span starts of 10 frames on 200, overlapping: 1 - (1 - 10/191)^13 of the frames, about 0.50
    assert 0.46 < rate < 0.54, rate
    runs = []
    for row in mask[:50]:
        edges = torch.diff(torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])]))
        runs += (edges.eq(-1).nonzero().flatten() - edges.eq(1).nonzero().flatten()).tolist()
    assert min(runs) >= 10  # every masked run is one span or several overlapping ones
    short = span_mask(torch.tensor([25, 5]), 25, 0.065, 10, min_spans=2, generator=generator)
    assert short[0].sum() >= 10 and not short[1].any()  # the minimum; a clip shorter than a span is left alone


def test_negatives_come_from_other_masked_frames_of_the_same_clip():
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, 3:9] = True
    mask[1, 10:20] = True
    negatives = sample_negatives(mask, 50, generator=torch.Generator().manual_seed(0))
    for row in range(2):
        own = set((mask[row].nonzero().flatten() + row * 30).tolist())
        for frame in mask[row].nonzero().flatten().tolist():
            picked = set(negatives[row, frame].tolist())
            assert picked <= own - {frame + row * 30} and len(picked) > 1
    with pytest.raises(ValueError, match="clip 0 has 1 masked frame"):
        sample_negatives(torch.tensor([[True, False, False]]), 3)


def test_the_quantizer_picks_one_entry_per_codebook_and_gumbel_is_straight_through():
    torch.manual_seed(4)
    quantizer = GumbelQuantizer(_tiny_config())
    features = torch.randn(2, 7, 16, requires_grad=True)
    vectors, _, codes, picks = quantizer.eval()(features)
    table = quantizer.codevectors[0].view(2, 8, 8)
    expected = torch.cat([table[0][codes[..., 0]], table[1][codes[..., 1]]], dim=-1)
    torch.testing.assert_close(vectors, expected)
    assert torch.equal(picks, codes)
    trained, perplexity, _, sampled = quantizer.train()(features)  # Gumbel samples: the vectors are their entries
    torch.testing.assert_close(trained, torch.cat([table[0][sampled[..., 0]], table[1][sampled[..., 1]]], dim=-1))
    trained.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert 2.0 <= perplexity.item() <= 16.0


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_a_new_model_has_conv_features_at_unit_scale_and_decisive_codes(norm):
    # torch's default conv init shrank the activations ~3x per conv: the seven-conv encoder's features vanished
    # under the layer norm's epsilon, the quantiser's logits went flat, Gumbel picks were noise and pretraining
    # sat at chance. Kaiming normal (fairseq, transformers) keeps them at unit scale.
    torch.manual_seed(6)
    model = Wav2Vec2ForPreTraining(sized_config("tiny", feature_norm=norm)).eval()
    waveform = torch.randn(2, 16000)
    with torch.no_grad():
        features = model.wav2vec2(waveform).features
        logits = model.quantizer.weight_proj(features).view(-1, 2, model.config.quantizer_entries)
    assert features.std() > 0.5
    assert logits.softmax(dim=-1).amax(dim=-1).mean() > 0.5  # each frame's code is decided, not a coin toss


def test_clips_shorter_than_the_receptive_field_are_a_clear_error():
    model = Wav2Vec2ForCTC(_tiny_config(vocab_size=5)).eval()
    assert model.config.receptive_field == 40 and model.config.frames_for(40) == 1
    with pytest.raises(ValueError, match="at least 40 samples"):
        model(torch.randn(1, 39))
    with pytest.raises(ValueError, match="needs vocab_size >= 2"):
        Wav2Vec2ForCTC(_tiny_config())


def test_our_directories_round_trip(tmp_path):
    torch.manual_seed(5)
    model = Wav2Vec2ForCTC(_tiny_config(vocab_size=6, feature_norm="layer", norm_first=True, conv_bias=True)).eval()
    model.save_pretrained(tmp_path / "ctc")
    loaded = Wav2Vec2ForCTC.from_pretrained(tmp_path / "ctc")
    waveform = torch.randn(1, 800)
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveform)[0], model(waveform)[0])
    assert loaded.config == model.config
