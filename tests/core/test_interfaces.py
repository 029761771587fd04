"""The interfaces domains build on: block specs and builders, backend capabilities, the token
decoder over a non-token memory, the growing KV cache, Performer's O(1) decoding state, LayerDrop."""

import dataclasses

import pytest
import torch

from polyformer.core import (
    BlockSpec,
    KVCache,
    LayerKVCache,
    TokenDecoder,
    backend_class,
    build_decoder,
    build_encoder,
    create_model,
    list_attention_backends,
)
from polyformer.core.kv_cache import MIN_CAPACITY

SPEC = BlockSpec(dim=32, num_heads=4, d_ff=64, backend="eager")


def test_backend_capabilities_are_declared_and_enforced():
    caps = {name: backend_class(name) for name in list_attention_backends()}
    assert {n for n, c in caps.items() if c.exact} == {"eager", "sdpa", "chunked"}
    assert {n for n, c in caps.items() if not c.supports_causal} == {"linformer"}
    assert {n for n, c in caps.items() if c.masks == "key_padding"} == {"linformer", "performer"}
    assert {n for n, c in caps.items() if c.decoding_state} == {"performer"}
    with pytest.raises(ValueError, match="cannot be causal"):
        build_decoder(BlockSpec(dim=32, num_heads=4, d_ff=64, backend="linformer", max_len=16), 1)
    with pytest.raises(ValueError, match="ALiBi"):
        TokenDecoder(50, BlockSpec(dim=32, num_heads=4, d_ff=64, backend="performer"), 1, position="alibi")


def test_block_spec_validates_and_builders_take_explicit_arguments():
    with pytest.raises(ValueError, match="activation"):
        BlockSpec(dim=32, num_heads=4, d_ff=64, activation="tanh")
    with pytest.raises(ValueError, match="layer_drop"):
        BlockSpec(dim=32, num_heads=4, d_ff=64, layer_drop=1.0)
    spec = BlockSpec(dim=32, num_heads=4, d_ff=64, norm_first=False, key_bias=False, out_bias=False, layer_scale=0.1)
    encoder = build_encoder(spec, 3)
    assert len(encoder.layers) == 3 and encoder.final_norm is None  # post-norm: no final norm
    attn = encoder.layers[0].self_attn
    assert attn.out_proj.bias is None and hasattr(attn, "qkv_proj_bias_keep")
    decoder = build_decoder(
        BlockSpec(dim=32, num_heads=4, d_ff=64), 2, cross_attention=True, causal=False, memory_dim=48
    )
    layer = decoder.layers[0]
    assert not layer.causal and layer.cross_attn.kv_proj.in_features == 48 and layer.cross_attn.qkv_proj is None
    assert decoder.final_norm is not None


def test_first_tokens_equals_the_full_layer_on_those_tokens():
    layer = build_encoder(dataclasses.replace(SPEC, rotary=True), 1).layers[0]
    x, pos = torch.randn(2, 7, 32), torch.randn(2, 7, 32)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    with torch.no_grad():
        full, _ = layer(x, mask=mask, pos=pos)
        first, _ = layer(x, mask=mask, pos=pos, first_tokens=2)
    torch.testing.assert_close(first, full[:, :2], atol=1e-5, rtol=1e-5)
    local = build_encoder(BlockSpec(dim=32, num_heads=4, d_ff=64, backend="local:3"), 1).layers[0]
    with pytest.raises(ValueError, match="exact"):
        local(x, first_tokens=1)


def test_token_decoder_over_a_non_token_memory_decodes_like_the_full_forward():
    """The decoder half of an ASR or captioning model: memory of another width, cached decoding."""
    spec = BlockSpec(dim=32, num_heads=4, d_ff=64, num_kv_heads=2)
    decoder = TokenDecoder(40, spec, 2, memory_dim=24, position="learned", max_len=32).eval()
    features = torch.randn(2, 11, 24)  # e.g. audio frames from a conv front end
    memory_mask = torch.ones(2, 11, dtype=torch.bool)
    memory_mask[0, 8:] = False
    tokens = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        full, _ = decoder(tokens, memory=features, memory_mask=memory_mask)
        cache = decoder.new_cache(features, memory_mask)
        steps = [decoder.step(tokens[:, :3], cache)] + [decoder.step(tokens[:, t : t + 1], cache) for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 9 and cache.next_position.tolist() == [9, 9]
    with pytest.raises(ValueError, match="target token ids"):
        decoder(torch.full((1, 2), 40), memory=features[:1])


def test_layer_cache_grows_by_doubling_and_keeps_every_step():
    cache = LayerKVCache()
    keys = [torch.randn(2, 3, 1, 4) for _ in range(MIN_CAPACITY + 5)]
    for k in keys:
        got_k, got_v = cache.append(k, -k)
    assert cache.buffer_k.shape[2] == 2 * MIN_CAPACITY and cache.length == len(keys)
    torch.testing.assert_close(got_k, torch.cat(keys, dim=2))
    torch.testing.assert_close(got_v, -torch.cat(keys, dim=2))
    cache.reorder(torch.tensor([1, 1]))
    torch.testing.assert_close(cache.self_k[0], torch.cat(keys, dim=2)[1])


def test_kv_cache_advance_keeps_positions_and_padding():
    cache = KVCache.empty(1)
    mask = torch.tensor([[False, True, True], [True, True, True]])  # left-padded prompt
    positions = cache.advance(mask, 2, 3, torch.device("cpu"), track_positions=True)
    assert positions.tolist() == [[0, 0, 1], [0, 1, 2]]
    positions = cache.advance(None, 2, 1, torch.device("cpu"), track_positions=True)
    assert positions.tolist() == [[2], [3]] and cache.length == 4
    assert cache.key_mask.tolist() == [[False, True, True, True], [True, True, True, True]]
    assert cache.key_positions.tolist() == [[0, 0, 1, 2], [0, 1, 2, 3]]


def test_performer_lm_decodes_from_a_constant_size_state_equal_to_the_full_forward():
    model = create_model("decoder_lm_tiny", backend="performer:16").eval()
    ids = torch.randint(3, 64, (2, 40))
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, :4] = False  # left padding
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        cache = model.new_cache()
        steps = [model.step(ids[:, :6], cache, mask[:, :6])]
        sizes = []
        for t in range(6, 40):
            steps.append(model.step(ids[:, t : t + 1], cache))
            sizes.append(sum(s.numel() for layer in cache.layers for s in (layer.state.kv, layer.state.key_max)))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
    assert all(layer.buffer_k is None for layer in cache.layers)  # no keys or values stored
    assert len(set(sizes)) == 1  # the state does not grow with the decoded length
    out = model.generate(ids[:, :6], max_new_tokens=5, num_beams=2)
    assert out.sequences.shape == (2, 5)


def test_layer_drop_skips_layers_only_while_training():
    torch.manual_seed(0)
    encoder = build_encoder(BlockSpec(dim=32, num_heads=4, d_ff=64, layer_drop=0.5), 8)
    x = torch.randn(2, 5, 32)
    counts = {len(encoder(x, output_hidden_states=True).hidden_states) - 1 for _ in range(10)}
    assert len(counts) > 1 and max(counts) <= 8  # a different number of layers ran
    encoder.eval()
    assert len(encoder(x, output_hidden_states=True).hidden_states) == 9
