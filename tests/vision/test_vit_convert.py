"""Checkpoint interop: timm VisionTransformer and Hugging Face ViTForImageClassification give our logits to 1e-4.

The reference models are built offline with random weights (perturbed so that zero-initialised
biases and norms are exercised), saved to files the way their libraries save them, and loaded
through ``ViT.from_timm`` / ``ViT.from_pretrained``.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from polyformer.vision.vit import ViT, convert_hf_state_dict, vit_config_from_hf

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-4, rtol=1e-4)


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def timm_vit(**kwargs) -> torch.nn.Module:
    args = dict(pretrained=False, num_classes=5, img_size=32, dynamic_img_size=True)
    return perturb(timm.create_model("vit_tiny_patch16_224", **{**args, **kwargs}))


def save_timm(model, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)  # a training checkpoint
    return path


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(init_values=0.1),
        dict(global_pool="avg"),
        dict(qkv_bias=False),
        dict(class_token=False, global_pool="avg"),
        dict(in_chans=1),
    ],
    ids=["default", "layer_scale", "avg_pool", "no_qkv_bias", "no_class_token", "grayscale"],
)
def test_timm_logits_match(tmp_path, kwargs):
    reference = timm_vit(**kwargs)
    ours = ViT.from_timm("vit_tiny_patch16_32", save_timm(reference, tmp_path / "w.safetensors"))
    channels = kwargs.get("in_chans", 3)
    images = torch.randn(2, channels, 32, 32)
    with torch.no_grad():
        expected = reference(images)
        assert expected.std() > 1e-3  # a comparison of constants would prove nothing
        torch.testing.assert_close(ours(images), expected, **TOL)


def test_timm_pth_checkpoint_and_other_image_size(tmp_path):
    reference = timm_vit()
    ours = ViT.from_timm("vit_tiny_patch16_32.augreg_in21k", save_timm(reference, tmp_path / "w.pth"))
    assert ours.config.num_classes == 5 and ours.config.grid_size == 2
    images = torch.randn(2, 3, 48, 64)  # timm's dynamic_img_size resamples the positions (bicubic) like ours
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), **TOL)


def test_timm_errors_are_clear(tmp_path):
    path = save_timm(timm_vit(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="unsupported timm model name"):
        ViT.from_timm("deit_tiny_patch16_224", path)
    with pytest.raises(ValueError, match="do not fit vit_small_patch16_32"):
        ViT.from_timm("vit_small_patch16_32", path)
    with pytest.raises(ValueError, match="positions"):
        ViT.from_timm("vit_tiny_patch16_64", path)
    with pytest.raises(FileNotFoundError, match="not found"):
        ViT.from_timm("vit_tiny_patch16_32", tmp_path / "missing.pth")


def hf_vit(**kwargs):
    fields = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    config = transformers.ViTConfig(**{**fields, **kwargs})
    return perturb(transformers.ViTForImageClassification(config))


def test_hf_directory_logits_match(tmp_path):
    reference = hf_vit(id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2})
    reference.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.9, 0.8, 0.7]})
    )
    ours = ViT.from_pretrained(tmp_path / "hf")
    assert ours.config.class_names == ["cat", "dog", "bird"] and ours.config.norm_eps == 1e-12
    assert ours.config.image_mean == [0.1, 0.2, 0.3]
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(pixel_values=images).logits, **TOL)


def test_hf_pytorch_model_bin_and_interpolated_positions(tmp_path):
    reference = hf_vit(num_labels=4, num_channels=1, qkv_bias=False)
    reference.save_pretrained(tmp_path / "hf")
    legacy = load_file(str(tmp_path / "hf" / "model.safetensors"))  # checkpoint names, as on the Hub
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(legacy, tmp_path / "hf" / "pytorch_model.bin")
    ours = ViT.from_pretrained(tmp_path / "hf")
    assert ours.config.class_names is None and ours.config.num_classes == 4 and not ours.config.qkv_bias
    images = torch.randn(2, 1, 48, 64)  # upsampling: HF's bicubic and ours (antialiased) agree
    with torch.no_grad():
        expected = reference(pixel_values=images, interpolate_pos_encoding=True).logits
        torch.testing.assert_close(ours(images), expected, **TOL)


def test_hf_in_memory_names_convert_too():
    reference = hf_vit(num_labels=3)
    ours = ViT(vit_config_from_hf(reference.config.to_dict()))
    ours.load_weights(convert_hf_state_dict(reference.state_dict()))  # transformers 5 names (vit.layers.N.*)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(images), reference(pixel_values=images).logits, **TOL)


def test_hf_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="vit.encoder.layer.0.attention.relative_bias"):
        convert_hf_state_dict({"vit.encoder.layer.0.attention.relative_bias": torch.zeros(1)})


def test_converted_model_round_trips_through_our_format(tmp_path):
    reference = hf_vit(num_labels=3)
    reference.save_pretrained(tmp_path / "hf")
    ours = ViT.from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    again = ViT.from_pretrained(tmp_path / "ours")
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(again(images), ours(images))
