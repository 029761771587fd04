"""Positional encodings, feed-forward variants, norms and stochastic depth."""

import math

import pytest
import torch
from torch import nn

from polyformer.core import (
    ALiBi,
    DropPath,
    GatedMLP,
    LearnedPositionalEmbedding2D,
    RMSNorm,
    RotaryEmbedding,
    apply_rotary,
    build_feed_forward,
    sincos_2d,
    sinusoidal_table,
)


def test_sinusoidal_table_matches_paper_formula():
    table = sinusoidal_table(10, 8)
    pos, i = 7, 2
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6)


def test_rotary_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        cq, sq = rope(torch.tensor([[pq]]))
        ck, sk = rope(torch.tensor([[pk]]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    assert score(5, 3) == pytest.approx(score(12, 10), abs=1e-4)
    assert score(0, 0) == pytest.approx((q * k).sum().item(), abs=1e-5)
    assert score(5, 3) != pytest.approx(score(5, 4), abs=1e-4)


def test_partial_rotary_leaves_other_channels():
    rope = RotaryEmbedding(16, rotary_dim=8)
    x = torch.randn(1, 2, 3, 16)
    cos, sin = rope(torch.arange(3))
    out = apply_rotary(x, cos, sin)
    assert torch.equal(out[..., 8:], x[..., 8:])
    assert out.norm() == pytest.approx(x.norm().item(), rel=1e-5)  # rotations keep the norm


def test_alibi_slopes_and_bias():
    assert ALiBi.slopes_for(8).tolist() == pytest.approx([2 ** (-(i + 1)) for i in range(8)])
    assert len(ALiBi.slopes_for(6)) == 6
    bias = ALiBi(4)(torch.arange(3)[None], torch.arange(3)[None])
    assert bias.shape == (1, 4, 3, 3)
    assert bias[0, 0, 2, 0].item() == pytest.approx(-2 * 0.25)
    assert torch.all(bias.diagonal(dim1=-2, dim2=-1) == 0)


def test_sincos_2d_shape_and_distinct_rows():
    table = sincos_2d(3, 4, 16)
    assert table.shape == (12, 16)
    assert torch.unique(table, dim=0).shape[0] == 12


def test_learned_2d_interpolates_to_new_grid_and_keeps_prefix():
    pos = LearnedPositionalEmbedding2D((4, 4), 8, num_prefix_tokens=1)
    same = pos()
    assert same is pos.weight
    bigger = pos((6, 8))
    assert bigger.shape == (1, 1 + 48, 8)
    assert torch.equal(bigger[:, :1], pos.weight[:, :1])
    back = pos((4, 4))
    assert torch.equal(back, pos.weight)


def test_gated_mlp_formula():
    ff = GatedMLP(8, 16, "swiglu")
    x = torch.randn(3, 8)
    expected = ff.down(torch.nn.functional.silu(ff.gate(x)) * ff.up(x))
    torch.testing.assert_close(ff(x), expected)
    assert isinstance(build_feed_forward(8, 16, "geglu"), GatedMLP)
    with pytest.raises(ValueError, match="unknown activation"):
        build_feed_forward(8, 16, "tanh")


def test_rmsnorm_formula():
    norm = RMSNorm(6, eps=1e-6)
    x = torch.randn(2, 6)
    torch.testing.assert_close(norm(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())


def test_drop_path_drops_whole_samples_and_is_identity_in_eval():
    dp = DropPath(0.5)
    x = torch.ones(1000, 4)
    y = dp(x)
    per_sample = y[:, 0]
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(y == y[:, :1])  # the whole sample is kept or dropped
    assert 0.4 < (per_sample > 0).float().mean() < 0.6
    dp.eval()
    assert torch.equal(dp(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_rmsnorm_matches_torch():
    ours, ref = RMSNorm(6, eps=1e-5), nn.RMSNorm(6, eps=1e-5)
    x = torch.randn(4, 6)
    torch.testing.assert_close(ours(x), ref(x))
