"""MultiHeadAttention / EncoderLayer / DecoderLayer reproduce torch.nn with the same weights.

torch.nn.MultiheadAttention stores q, k, v as one (3D, D) ``in_proj_weight``, the layout of our
fused ``qkv_proj``, so its weights copy over as they are.
"""

import pytest
import torch
from torch import nn

from polyformer.core import MLP, DecoderLayer, EncoderLayer, MultiHeadAttention

D, H = 32, 4


def copy_from_torch_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        ours.qkv_proj.weight.copy_(ref.in_proj_weight)
        ours.qkv_proj.bias.copy_(ref.in_proj_bias)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)


def copy_mlp(ours: MLP, linear1: nn.Linear, linear2: nn.Linear) -> None:
    ours.fc1.load_state_dict(linear1.state_dict())
    ours.fc2.load_state_dict(linear2.state_dict())


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_self_attention_matches_torch(backend):
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H, backend=backend).eval()
    copy_from_torch_mha(ours, ref)
    x = torch.randn(3, 7, D)
    lengths = torch.tensor([7, 5, 2])
    pad = torch.arange(7)[None] >= lengths[:, None]  # torch: True = ignore
    expected, expected_w = ref(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    out, _ = ours(x, mask=~pad[:, None, None, :])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    _, weights = ours(x, mask=~pad[:, None, None, :], return_weights=True)
    torch.testing.assert_close(weights, expected_w, atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_torch():
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H, cross=True).eval()
    copy_from_torch_mha(ours, ref)
    x, memory = torch.randn(2, 4, D), torch.randn(2, 9, D)
    expected, _ = ref(x, memory, memory)
    out, _ = ours(x, memory)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
def test_separate_key_value_inputs_and_position_terms_match_torch(cross):
    """DETR's use: q = query + query_pos, k = key + key_pos, v = value (three different inputs)."""
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H, cross=cross, backend="eager").eval()
    copy_from_torch_mha(ours, ref)
    query, query_pos = torch.randn(2, 4, D), torch.randn(2, 4, D)
    key, key_pos, value = torch.randn(2, 9, D), torch.randn(2, 9, D), torch.randn(2, 9, D)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    with torch.no_grad():
        expected, _ = ref(query + query_pos, key + key_pos, value, key_padding_mask=pad)
        out, _ = ours(query, key, value, query_pos=query_pos, key_pos=key_pos, mask=~pad[:, None, None, :])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_self_attention_position_terms_go_to_queries_and_keys_only():
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H).eval()
    copy_from_torch_mha(ours, ref)
    x, pos = torch.randn(2, 6, D), torch.randn(2, 6, D)
    with torch.no_grad():
        expected, _ = ref(x + pos, x + pos, x)
        out, _ = ours(x, query_pos=pos)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_switched_off_key_bias_stays_zero_and_matches_separate_projections():
    attn = MultiHeadAttention(D, H, k_bias=False, backend="eager")
    bias = attn.qkv_proj.bias
    assert torch.equal(bias[D : 2 * D], torch.zeros(D)) and bias[:D].abs().sum() > 0
    with torch.no_grad():
        bias.fill_(0.5)  # what a careless load would do: the key part still acts as zero
    x = torch.randn(2, 5, D)
    w = attn.qkv_proj.weight
    q, k, v = x @ w[:D].T + 0.5, x @ w[D : 2 * D].T, x @ w[2 * D :].T + 0.5
    split = lambda t: t.view(2, 5, H, D // H).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(split(q) @ split(k).transpose(-2, -1) / (D // H) ** 0.5, dim=-1)
    expected = attn.out_proj((weights @ split(v)).transpose(1, 2).reshape(2, 5, D))
    torch.testing.assert_close(attn(x)[0], expected, atol=1e-5, rtol=1e-5)
    attn(x)[0].sum().backward()
    assert torch.equal(attn.qkv_proj.bias.grad[D : 2 * D], torch.zeros(D))
    assert "qkv_proj_bias_keep" not in attn.state_dict()


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    ref = nn.TransformerEncoderLayer(
        D, H, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    ours = EncoderLayer(
        MultiHeadAttention(D, H), MLP(D, 64, "gelu"), nn.LayerNorm(D), nn.LayerNorm(D), norm_first=norm_first
    ).eval()
    copy_from_torch_mha(ours.self_attn, ref.self_attn)
    copy_mlp(ours.feed_forward, ref.linear1, ref.linear2)
    ours.self_attn_norm.load_state_dict(ref.norm1.state_dict())
    ours.ffn_norm.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(2, 6, D)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        expected = ref(x, src_key_padding_mask=pad)
        out, _ = ours(x, mask=~pad[:, None, None, :])
    real = ~pad  # torch's fast path zeroes padded rows; compare real tokens
    torch.testing.assert_close(out[real], expected[real], atol=1e-5, rtol=1e-5)


def _decoder_pair(norm_first: bool, causal: bool) -> tuple[nn.TransformerDecoderLayer, DecoderLayer]:
    ref = nn.TransformerDecoderLayer(
        D, H, 64, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    ).eval()
    norms = [nn.LayerNorm(D) for _ in range(3)]
    ours = DecoderLayer(
        MultiHeadAttention(D, H), MLP(D, 64, "relu"), norms[0], norms[2],
        cross_attn=MultiHeadAttention(D, H, cross=True), cross_attn_norm=norms[1], norm_first=norm_first, causal=causal,
    ).eval()  # fmt: skip
    copy_from_torch_mha(ours.self_attn, ref.self_attn)
    copy_from_torch_mha(ours.cross_attn, ref.multihead_attn)
    copy_mlp(ours.feed_forward, ref.linear1, ref.linear2)
    for mine, theirs in zip(norms, (ref.norm1, ref.norm2, ref.norm3)):
        mine.load_state_dict(theirs.state_dict())
    return ref, ours


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    ref, ours = _decoder_pair(norm_first, causal=True)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    with torch.no_grad():
        expected = ref(x, memory, tgt_is_causal=True, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5))
        out, _, _ = ours(x, memory=memory)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_non_causal_decoder_layer_over_queries_matches_torch(norm_first):
    """DETR's decoder: object queries see each other (no causal mask) and attend to a padded memory."""
    ref, ours = _decoder_pair(norm_first, causal=False)
    queries, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 4:] = True
    with torch.no_grad():
        expected = ref(queries, memory, memory_key_padding_mask=pad)
        out, _, _ = ours(queries, memory=memory, memory_mask=~pad[:, None, None, :])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    ours.causal = True
    with torch.no_grad():
        masked, _, _ = ours(queries, memory=memory, memory_mask=~pad[:, None, None, :])
    assert not torch.allclose(masked[:, :-1], out[:, :-1], atol=1e-4)  # causality would change the output


def test_grouped_query_attention_equals_repeated_kv_heads():
    gqa = MultiHeadAttention(D, H, num_kv_heads=2, backend="eager").eval()
    full = MultiHeadAttention(D, H, backend="eager").eval()
    hd = D // H
    with torch.no_grad():
        full.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for part in ("q", "k", "v"):
            w, b = gqa.projection(part)
            if part != "q":  # 2 key/value heads -> 4, each repeated
                w = w.reshape(2, hd, D).repeat_interleave(2, dim=0).reshape(D, D)
                b = b.reshape(2, hd).repeat_interleave(2, dim=0).reshape(D)
            dst_w, dst_b = full.projection(part)
            dst_w.copy_(w)
            dst_b.copy_(b)
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(gqa(x, is_causal=True)[0], full(x, is_causal=True)[0], atol=1e-5, rtol=1e-5)


def test_invalid_head_counts_raise():
    with pytest.raises(ValueError, match="divide the width"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        MultiHeadAttention(32, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="unknown attention backend"):
        MultiHeadAttention(32, 4, backend="flash9")
