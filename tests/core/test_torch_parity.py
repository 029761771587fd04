"""MultiHeadAttention / EncoderLayer / DecoderLayer reproduce torch.nn with the same weights."""

import pytest
import torch
from torch import nn

from polyformer.core import MLP, DecoderLayer, EncoderLayer, MultiHeadAttention

D, H = 32, 4


def copy_from_torch_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    wq, wk, wv = ref.in_proj_weight.detach().chunk(3)
    bq, bk, bv = ref.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for proj, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
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


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    ref = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first).eval()
    ours = EncoderLayer(MultiHeadAttention(D, H), MLP(D, 64, "gelu"), nn.LayerNorm(D), nn.LayerNorm(D), norm_first=norm_first).eval()
    copy_from_torch_mha(ours.self_attn, ref.self_attn)
    copy_mlp(ours.feed_forward, ref.linear1, ref.linear2)
    ours.norm1.load_state_dict(ref.norm1.state_dict())
    ours.norm2.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(2, 6, D)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        expected = ref(x, src_key_padding_mask=pad)
        out, _ = ours(x, mask=~pad[:, None, None, :])
    real = ~pad  # torch's fast path zeroes padded rows; compare real tokens
    torch.testing.assert_close(out[real], expected[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    ref = nn.TransformerDecoderLayer(D, H, 64, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first).eval()
    norms = [nn.LayerNorm(D) for _ in range(3)]
    ours = DecoderLayer(MultiHeadAttention(D, H), MultiHeadAttention(D, H, cross=True), MLP(D, 64, "relu"), norms, norm_first=norm_first).eval()
    copy_from_torch_mha(ours.self_attn, ref.self_attn)
    copy_from_torch_mha(ours.cross_attn, ref.multihead_attn)
    copy_mlp(ours.feed_forward, ref.linear1, ref.linear2)
    for mine, theirs in zip(norms, (ref.norm1, ref.norm2, ref.norm3)):
        mine.load_state_dict(theirs.state_dict())
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    with torch.no_grad():
        expected = ref(x, memory, tgt_is_causal=True, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5))
        out, _, _ = ours(x, memory)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_grouped_query_attention_equals_repeated_kv_heads():
    gqa = MultiHeadAttention(D, H, num_kv_heads=2, backend="eager").eval()
    full = MultiHeadAttention(D, H, backend="eager").eval()
    hd = D // H
    with torch.no_grad():
        full.q_proj.load_state_dict(gqa.q_proj.state_dict())
        full.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for src, dst in ((gqa.k_proj, full.k_proj), (gqa.v_proj, full.v_proj)):
            w = src.weight.view(2, hd, D).repeat_interleave(2, dim=0).reshape(D, D)
            b = src.bias.view(2, hd).repeat_interleave(2, dim=0).reshape(D)
            dst.weight.copy_(w)
            dst.bias.copy_(b)
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(gqa(x, is_causal=True)[0], full(x, is_causal=True)[0], atol=1e-5, rtol=1e-5)


def test_invalid_head_counts_raise():
    with pytest.raises(ValueError, match="divide the width"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        MultiHeadAttention(32, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="unknown attention backend"):
        MultiHeadAttention(32, 4, backend="flash9")
