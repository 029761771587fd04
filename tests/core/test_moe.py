"""Mixture-of-Experts feed-forward: dense equivalence, losses, capacity, routing, models."""

import math

import pytest
import torch
from torch import nn

from polyformer.core import MLP, EncoderLayer, GatedMLP, MultiHeadAttention, create_model
from polyformer.core.moe import MoEFeedForward, apply_moe, build_moe_feed_forward, collect_aux_loss, moe_stats

D, HID = 16, 32


@pytest.mark.parametrize("dense", [MLP(D, HID, "gelu"), GatedMLP(D, HID, "swiglu")], ids=["mlp", "swiglu"])
def test_one_expert_equals_the_dense_layer(dense):
    moe = MoEFeedForward.from_dense(dense, num_experts=1)
    x = torch.randn(3, 7, D)
    torch.testing.assert_close(moe(x), dense(x))
    assert moe.stats.dropped_tokens == 0 and moe.stats.kept.tolist() == [21]


def test_upcycled_experts_equal_the_dense_layer_under_any_routing():
    dense = MLP(D, HID, "relu")
    moe = MoEFeedForward.from_dense(dense, num_experts=4, top_k=2, capacity_factor=None)
    x = torch.randn(20, D)
    torch.testing.assert_close(moe(x), dense(x))  # normalised top-2 gates of identical experts sum to 1


def test_uniform_routing_balance_loss_is_one():
    moe = MoEFeedForward(D, HID, num_experts=4, top_k=1)
    nn.init.zeros_(moe.router.weight)  # every token: probabilities 1/E
    moe(torch.randn(32, D))
    assert moe.balance_loss.item() == pytest.approx(1.0)
    assert moe.z_loss.item() == pytest.approx(math.log(4) ** 2)


def _router_to(moe: MoEFeedForward, expert: int, strength: float = 50.0) -> None:
    """Send every (positive) input to ``expert`` with probability ~1."""
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[expert] = strength


def test_collapsed_routing_balance_loss_is_num_experts():
    moe = MoEFeedForward(D, HID, num_experts=4, top_k=1, capacity_factor=None)
    _router_to(moe, 2)
    moe(torch.rand(40, D) + 0.1)
    assert moe.balance_loss.item() == pytest.approx(4.0, rel=1e-4)
    assert moe.stats.routed.tolist() == [0, 0, 40, 0]
    torch.testing.assert_close(moe.stats.utilisation, torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_tokens_over_capacity_are_counted_and_pass_through_the_residual():
    moe = MoEFeedForward(D, HID, num_experts=4, top_k=1, capacity_factor=1.0)
    _router_to(moe, 1)
    x = torch.rand(2, 10, D) + 0.1  # 20 tokens, capacity ceil(1.0 * 20 / 4) = 5
    out = moe(x).reshape(20, D)
    assert moe.stats.capacity == 5
    assert moe.stats.kept.tolist() == [0, 5, 0, 0]
    assert moe.stats.dropped_assignments == 15 and moe.stats.dropped_tokens == 15
    assert out[:5].abs().sum() > 0 and torch.equal(out[5:], torch.zeros(15, D))  # earlier tokens win
    attn = MultiHeadAttention(D, 2)
    nn.init.zeros_(attn.out_proj.weight)
    nn.init.zeros_(attn.out_proj.bias)
    layer = EncoderLayer(attn, moe, nn.LayerNorm(D), nn.LayerNorm(D), norm_first=True)
    moe.capacity_factor = 0.25  # capacity 2 per expert: at most 8 of the 20 tokens are served
    y, _ = layer(x)
    dropped = ~moe.stats.served.reshape(2, 10)
    assert moe.stats.dropped_tokens == int(dropped.sum()) > 0
    torch.testing.assert_close(y[dropped], x[dropped])  # unchanged: residual only
    assert not torch.allclose(y[~dropped], x[~dropped])


def test_no_drop_mode_keeps_every_token():
    moe = MoEFeedForward(D, HID, num_experts=4, top_k=2, capacity_factor=None)
    _router_to(moe, 0)
    moe(torch.rand(30, D) + 0.1)
    assert moe.stats.dropped_assignments == 0 and moe.stats.dropped_tokens == 0
    assert moe.stats.kept.sum().item() == 60


@pytest.mark.parametrize("top_k", [1, 2])
def test_grouped_computation_equals_a_per_token_reference(top_k):
    moe = MoEFeedForward(D, HID, num_experts=5, top_k=top_k, capacity_factor=None, activation="gelu")
    x = torch.randn(4, 6, D)
    out = moe(x).reshape(-1, D)
    flat = x.reshape(-1, D)
    _, gates, experts = moe.route(flat)
    for i in range(flat.shape[0]):  # the reference: one token at a time
        want = sum(gates[i, j] * moe.expert(int(experts[i, j]), flat[i : i + 1])[0] for j in range(top_k))
        torch.testing.assert_close(out[i], want, atol=1e-5, rtol=1e-5)
    if top_k == 2:
        torch.testing.assert_close(gates.sum(-1), torch.ones(24))


def test_gradients_reach_the_router_from_the_output_and_the_aux_loss():
    moe = MoEFeedForward(D, HID, num_experts=4, top_k=1)
    x = torch.randn(16, D)
    moe(x).pow(2).sum().backward()
    assert moe.router.weight.grad.abs().sum() > 0
    moe.zero_grad()
    moe(x)
    moe.aux_loss.backward()
    assert moe.router.weight.grad.abs().sum() > 0
    assert moe.fc1_weight.grad is None  # the aux loss touches only the router


def test_apply_moe_makes_every_nth_layer_moe_and_collects_losses():
    model = create_model("decoder_lm_tiny", decoder_layers=4)
    apply_moe(model, every=2, num_experts=4, top_k=2)
    kinds = [type(layer.feed_forward).__name__ for layer in model.decoder.stack.layers]
    assert kinds == ["GatedMLP", "MoEFeedForward", "GatedMLP", "MoEFeedForward"]
    assert model.decoder.stack.layers[1].feed_forward.hidden_dim == 256 // 2  # same active width per token
    logits = model(torch.randint(3, 64, (2, 9)))
    aux = collect_aux_loss(model)
    (logits.mean() + aux).backward()
    assert aux.item() > 0 and len(moe_stats(model)) == 2
    assert model.decoder.stack.layers[1].feed_forward.router.weight.grad is not None


def test_build_from_config_and_bad_settings():
    config = create_model("transformer_tiny").config
    moe = build_moe_feed_forward(config.d_model, config.d_ff, num_experts=3, top_k=1)
    assert (moe.dim, moe.hidden_dim, moe.num_experts) == (config.d_model, config.d_ff, 3)
    with pytest.raises(ValueError, match="top_k"):
        MoEFeedForward(D, HID, num_experts=2, top_k=3)
    with pytest.raises(ValueError, match="capacity_factor"):
        MoEFeedForward(D, HID, capacity_factor=0)
    with pytest.raises(ValueError, match="activation"):
        MoEFeedForward(D, HID, activation="tanh")
    with pytest.raises(ValueError, match="every"):
        apply_moe(create_model("decoder_lm_tiny"), every=0)


def test_moe_from_config_every_nth_layer_and_round_trip(tmp_path):
    from polyformer.core import DecoderOnlyTransformer, TransformerConfig
    from polyformer.core.moe import MoEFeedForward, collect_aux_loss

    config = TransformerConfig(
        vocab_size=40,
        d_model=32,
        num_heads=4,
        decoder_layers=4,
        d_ff=64,
        dropout=0.0,
        moe_experts=4,
        moe_every=2,
        moe_top_k=2,
        moe_capacity_factor=0.0,
    )
    model = DecoderOnlyTransformer(config).eval()
    kinds = [type(layer.feed_forward) for layer in model.decoder.stack.layers]
    assert [k is MoEFeedForward for k in kinds] == [False, True, False, True]
    assert model.decoder.stack.layers[1].feed_forward.capacity_factor is None  # 0 = no dropping
    ids = torch.randint(3, 40, (2, 6))
    with torch.no_grad():
        logits = model(ids)
    assert collect_aux_loss(model) > 0
    loaded = DecoderOnlyTransformer.from_pretrained(model.save_pretrained(tmp_path / "moe"))
    with torch.no_grad():
        assert torch.equal(loaded(ids), logits)
    with pytest.raises(ValueError, match="moe_top_k=3"):
        TransformerConfig(moe_experts=2, moe_top_k=3)
