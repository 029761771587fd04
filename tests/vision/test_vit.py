"""ViT: every preset runs forward/backward, config validation, pooling, backends, resizing, save/load, learning."""

import json

import pytest
import torch
import torch.nn.functional as F

import polyformer.vision  # noqa: F401  (registers the presets)
from polyformer.core import create_model, list_presets
from polyformer.vision.vit import PatchEmbedding, ViT, ViTConfig, vit_nano_patch4_28

VIT_PRESETS = [p.name for p in list_presets("vit")]
BIG = {"vit_tiny_patch16_224": 5_717_416, "vit_small_patch16_224": 22_050_664, "vit_base_patch16_224": 86_567_656}


def tiny_config(**overrides) -> ViTConfig:
    fields = dict(
        image_size=16, patch_size=4, in_channels=3, num_classes=5, d_model=32, num_layers=2, num_heads=4, d_ff=64
    )
    return ViTConfig(**{**fields, **overrides})


def test_presets_are_registered():
    assert (
        set(BIG) | {"vit_nano_patch4_28", "vit_mnist_patch4_28", "vit_nano_patch4_32", "vit_cifar_patch4_32"}
        <= set(VIT_PRESETS)
    )


@pytest.mark.parametrize("name", VIT_PRESETS)
def test_preset_forward_backward_finite(name):
    # The ImageNet presets keep their width, heads and patch size but run 2 layers on 32x32
    # images (the position table is resampled), so the test stays fast.
    overrides = dict(num_layers=2) if name in BIG else {}
    model = create_model(name, **overrides)
    config = model.config
    side = 32 if name in BIG else config.image_size
    images = torch.randn(2, config.in_channels, side, side)
    logits = model(images)
    assert logits.shape == (2, config.num_classes)
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name,count", sorted(BIG.items()))
def test_imagenet_presets_have_reference_parameter_counts(name, count):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count  # the same as timm's models


def test_defaults_are_vit_base_16():
    config = ViTConfig()
    assert (
        (config.image_size, config.patch_size, config.d_model, config.num_layers, config.num_heads, config.d_ff)
        == (224, 16, 768, 12, 12, 3072)
    )
    assert config.grid_size == 14 and config.num_prefix_tokens == 1 and config.image_mean == [0.5] * 3


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(image_size=30, patch_size=4), "must divide image_size"),
        (dict(d_model=30, num_heads=4), "must divide d_model"),
        (dict(pool="max"), "pool must be one of"),
        (dict(pool="cls", class_token=False), "needs class_token=True"),
        (dict(drop_path=1.0), "drop_path must be in"),
        (dict(activation="tanh"), "activation must be one of"),
        (dict(image_mean=[0.5]), "one value per channel"),
        (dict(class_names=["a", "b"]), "num_classes=5"),
        (dict(num_classes=-1), "num_classes must be"),
        (dict(backend=""), "backend must name"),
    ],
)
def test_config_validation_says_what_is_wrong(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_config_json_round_trip(tmp_path):
    config = tiny_config(class_names=list("abcde"), layer_scale=0.1, pool="mean")
    config.save(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vit"
    assert ViTConfig.load(tmp_path / "config.json") == config


def test_unknown_backend_fails_at_construction():
    with pytest.raises(ValueError, match="unknown attention backend"):
        ViT(tiny_config(backend="nope"))


def test_patch_embedding_shapes_and_input_errors():
    embed = PatchEmbedding(4, 3, 8)
    tokens, grid = embed(torch.randn(2, 3, 8, 12))
    assert tokens.shape == (2, 6, 8) and grid == (2, 3)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        embed(torch.randn(1, 3, 10, 12))
    with pytest.raises(ValueError, match="3-channel"):
        embed(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        embed(torch.randn(3, 8, 8))


def test_class_token_pooling_reads_the_first_token_after_the_norm():
    model = ViT(tiny_config()).eval()
    images = torch.randn(2, 3, 16, 16)
    features = model.forward_features(images)
    assert features.shape == (2, 1 + 16, 32)
    torch.testing.assert_close(model(images), model.head(features[:, 0]))


def test_mean_pooling_without_class_token():
    model = ViT(tiny_config(class_token=False, pool="mean")).eval()
    assert model.cls_token is None
    images = torch.randn(2, 3, 16, 16)
    features = model.forward_features(images)
    assert features.shape == (2, 16, 32)
    torch.testing.assert_close(model(images), model.head(model.norm(features.mean(1))))


def test_no_head_returns_pooled_features():
    model = ViT(tiny_config(num_classes=0)).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 32)


def test_layer_scale_and_no_qkv_bias_build_the_right_parameters():
    model = ViT(tiny_config(layer_scale=0.1, qkv_bias=False))
    layer = model.encoder.layers[0]
    torch.testing.assert_close(layer.self_attn_residual.scale.gamma, torch.full((32,), 0.1))
    assert layer.self_attn.qkv_proj.bias is None and layer.self_attn.out_proj.bias is not None
    assert torch.isfinite(model(torch.randn(1, 3, 16, 16))).all()


def test_stochastic_depth_is_random_in_training_and_off_in_eval():
    model = ViT(tiny_config(drop_path=0.5, num_layers=4))
    rates = [layer.self_attn_residual.drop_path.p for layer in model.encoder.layers[1:]]
    assert rates == pytest.approx([0.5 / 3, 1.0 / 3, 0.5])  # linear ramp from 0 (layer 0 has none)
    images = torch.randn(8, 3, 16, 16)
    model.train()
    assert not torch.allclose(model(images), model(images))
    model.eval()
    torch.testing.assert_close(model(images), model(images))


@pytest.mark.parametrize("backend", ["eager", "chunked"])
def test_backends_agree_with_sdpa(backend):
    model = ViT(tiny_config()).eval()
    other = ViT(tiny_config(backend=backend)).eval()
    other.load_state_dict(model.state_dict())
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(other(images), model(images), atol=1e-5, rtol=1e-5)


def test_other_image_sizes_resample_the_position_table():
    model = ViT(tiny_config()).eval()
    table = model.pos_embed.weight
    assert model.pos_embed() is table  # the training size uses the table itself
    assert model(torch.randn(2, 3, 24, 32)).shape == (2, 5)
    resampled = model.pos_embed((6, 8))
    assert resampled.shape == (1, 1 + 48, 32)
    torch.testing.assert_close(resampled[:, :1], table[:, :1])  # the class token's position is kept


def test_save_and_load_round_trip(tmp_path):
    model = ViT(tiny_config(class_names=list("abcde"), layer_scale=0.1)).eval()
    images = torch.randn(2, 3, 16, 16)
    model.save_pretrained(tmp_path / "vit")
    assert sorted(p.name for p in (tmp_path / "vit").iterdir()) == ["config.json", "model.safetensors"]
    loaded = ViT.from_pretrained(tmp_path / "vit")
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(loaded(images), model(images))
    eager = ViT.from_pretrained(tmp_path / "vit", backend="eager")
    torch.testing.assert_close(eager(images), model(images), atol=1e-5, rtol=1e-5)


def test_from_pretrained_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        ViT.from_pretrained(tmp_path)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = vit_nano_patch4_28()
    images, labels = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


@pytest.mark.parametrize("backend", ["sdpa", "eager", "chunked", "local:4"])
def test_class_token_shortcut_equals_the_full_last_layer(backend):
    # forward() computes the last layer for the class token only (exact backends); its logits
    # and gradients must equal those of the full stack read through forward_features.
    model = ViT(tiny_config(backend=backend, layer_scale=0.5))
    images = torch.randn(3, 3, 16, 16)
    fast = model(images)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(model.parameters()), allow_unused=True)
    full = model.head(model.pool(model.forward_features(images)))
    full_grads = torch.autograd.grad(full.square().sum(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
    for a, b in zip(fast_grads, full_grads):
        torch.testing.assert_close(a if a is not None else torch.zeros_like(b), b, atol=1e-5, rtol=1e-4)


def test_encode_returns_hidden_states_and_attention_weights():
    model = ViT(tiny_config()).eval()
    out = model.encode(torch.randn(2, 3, 16, 16), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 4, 17, 17)
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(2, 4, 17))
