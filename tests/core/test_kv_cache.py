"""Incremental decoding through the KV cache equals a full forward pass."""

import pytest
import torch

from polyformer.core import DecoderOnlyTransformer, EncoderDecoderTransformer, TransformerConfig

POSITIONS = ["sinusoidal", "learned", "rotary", "alibi"]


def _config(position, **extra):
    fields = dict(
        vocab_size=50,
        d_model=32,
        num_heads=4,
        encoder_layers=2,
        decoder_layers=2,
        d_ff=64,
        dropout=0.0,
        position=position,
        max_len=64,
    )
    return TransformerConfig(**{**fields, **extra})


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("num_kv_heads", [None, 2])
def test_decoder_only_cache_matches_full_forward_with_left_padding(position, num_kv_heads):
    model = DecoderOnlyTransformer(_config(position, num_kv_heads=num_kv_heads, norm_first=True)).eval()
    lengths = torch.tensor([9, 6, 3])
    t = 9
    mask = torch.arange(t)[None] >= (t - lengths)[:, None]  # left padding
    ids = torch.randint(3, 50, (3, t)).masked_fill(~mask, 0)
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        cache = model.new_cache()
        prompt = 4
        chunks = [model(ids[:, :prompt], attention_mask=mask[:, :prompt], cache=cache)]
        for i in range(prompt, t):
            chunks.append(model(ids[:, i : i + 1], attention_mask=mask[:, i : i + 1], cache=cache))
    stepped = torch.cat(chunks, dim=1)
    torch.testing.assert_close(stepped[mask], full[mask], atol=1e-4, rtol=1e-4)
    # Every row's real tokens see the same positions as an unpadded run of that row alone.
    with torch.no_grad():
        alone = model(ids[2:3, t - 3 :])
    torch.testing.assert_close(full[2, t - 3 :], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_decoder_cache_matches_full_forward_with_padded_source(position, norm_first):
    model = EncoderDecoderTransformer(_config(position, norm_first=norm_first)).eval()
    src = torch.randint(3, 50, (3, 8))
    src[1, 5:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(3, 50, (3, 6))
    with torch.no_grad():
        full = model(src, tgt)
        cache = model.new_cache(src)
        stepped = torch.cat([model.step(tgt[:, i : i + 1], cache) for i in range(tgt.shape[1])], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-4, rtol=1e-4)
    assert cache.length == 6
    # The cross-attention keys were computed once: (B, H, S, Dh).
    assert cache.layers[0].cross_k.shape == (3, 4, 8, 8)


def test_padded_source_tokens_do_not_change_outputs():
    model = EncoderDecoderTransformer(_config("sinusoidal")).eval()
    src = torch.randint(3, 50, (1, 5))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    tgt = torch.randint(3, 50, (1, 4))
    with torch.no_grad():
        torch.testing.assert_close(model(padded, tgt), model(src, tgt), atol=1e-5, rtol=1e-5)


def test_cache_reorder_selects_rows():
    model = DecoderOnlyTransformer(_config("rotary")).eval()
    ids = torch.randint(3, 50, (2, 5))
    with torch.no_grad():
        cache = model.new_cache()
        model(ids, cache=cache)
        cache.reorder(torch.tensor([1, 1, 0]))
        nxt = torch.randint(3, 50, (3, 1))
        out = model(nxt, cache=cache)
        full = model(torch.cat([ids[[1, 1, 0]], nxt], dim=1))
    torch.testing.assert_close(out[:, 0], full[:, -1], atol=1e-4, rtol=1e-4)


def test_models_return_per_layer_hidden_states_and_attention_weights():
    model = EncoderDecoderTransformer(_config("learned", norm_first=True)).eval()
    src = torch.randint(3, 50, (2, 7))
    src[1, 4:] = 0
    tgt = torch.randint(3, 50, (2, 5))
    with torch.no_grad():
        out = model(src, tgt, output_hidden_states=True, output_attentions=True)
        plain = model(src, tgt)
    torch.testing.assert_close(out.logits, plain)
    assert len(out.encoder.hidden_states) == 3 and len(out.decoder.hidden_states) == 3
    enc_w, self_w, cross_w = out.encoder.attentions[0], out.decoder.attentions[0], out.decoder.cross_attentions[0]
    assert enc_w.shape == (2, 4, 7, 7) and self_w.shape == (2, 4, 5, 5) and cross_w.shape == (2, 4, 5, 7)
    assert torch.all(cross_w[1, :, :, 4:] == 0)  # padded source tokens get no weight
    assert torch.all(self_w.triu(1) == 0)  # causal
    torch.testing.assert_close(cross_w.sum(-1), torch.ones(2, 4, 5))
    lm = DecoderOnlyTransformer(_config("rotary")).eval()
    with torch.no_grad():
        lm_out = lm(tgt, output_attentions=True)
    assert len(lm_out.decoder.attentions) == 2 and lm_out.decoder.cross_attentions == (None, None)


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_cached_steps_past_the_position_table_still_fail_clearly(position):
    """Steps inside the table skip the range check (the cache length bounds the positions);
    a step past it is still the clear error."""
    model = DecoderOnlyTransformer(_config(position, max_len=8)).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model.step(torch.randint(3, 50, (2, 7)), cache)
        model.step(torch.randint(3, 50, (2, 1)), cache)  # position 7: the last one
        with pytest.raises(ValueError, match="position 8 is past the maximum length 8"):
            model.step(torch.randint(3, 50, (2, 1)), cache)
