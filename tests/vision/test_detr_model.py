"""DETR model: presets run forward and backward, outputs have the promised shapes and ranges, padding
does not change a padded image's predictions, save/load round-trips, and a Hugging Face
``DetrForObjectDetection`` directory (random weights, built offline) loads with its logits and
boxes to 1e-4.
"""

import json

import pytest
import torch

from polyformer.core import create_model
from polyformer.vision.detr import DETR, DetrConfig, detr_config_from_hf

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")

TOL = dict(atol=1e-4, rtol=1e-4)
TINY = dict(d_model=32, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=64, num_queries=5, num_classes=3)


def tiny_detr(**overrides) -> DETR:
    torch.manual_seed(0)
    return DETR(DetrConfig(backbone="resnet18", min_size=64, max_size=96, **{**TINY, **overrides}))


@pytest.mark.parametrize("preset", ["detr_resnet50", "detr_resnet18", "detr_small_resnet18"])
def test_presets_forward_backward(preset):
    small = dict(d_model=32, num_heads=4, encoder_layers=1, decoder_layers=2, d_ff=32, num_queries=4)
    model = create_model(preset, **small).train()
    images = torch.randn(2, 3, 64, 96)
    out = model(images)
    assert out.logits.shape == (2, 4, model.config.num_classes + 1)
    assert out.boxes.shape == (2, 4, 4) and bool(((out.boxes > 0) & (out.boxes < 1)).all())
    assert len(out.aux) == 1 and out.aux[0][0].shape == out.logits.shape
    (out.logits.sum() + out.boxes.sum() + out.aux[0][1].sum()).backward()
    assert torch.isfinite(model.class_head.weight.grad).all()
    # DETR trains backbone stages 2-4 only: the stem and stage 1 get no gradient (the small preset trains all)
    frozen = model.config.frozen_stages == 1
    assert (model.backbone.conv1.weight.grad is None) == frozen
    assert (model.backbone.layer1[0].conv1.weight.grad is None) == frozen
    assert model.backbone.layer2[0].conv1.weight.grad is not None


def test_eval_has_no_aux_unless_asked():
    model = tiny_detr().eval()
    images = torch.randn(1, 3, 64, 64)
    assert model(images).aux == []
    out = model(images, aux=True)
    assert len(out.aux) == 1
    torch.testing.assert_close(model(images).logits, out.logits)


def test_padding_does_not_change_predictions():
    """An image padded on the right and bottom predicts what it predicts alone when the mask marks
    the padding (and not without the mask). A ResNet's receptive field reaches into the padding, so
    the backbone is swapped for a patch projection (stride 32) that sees each cell alone."""
    model = tiny_detr(dropout=0.0).eval()
    model.backbone = torch.nn.Conv2d(3, model.config.backbone_channels, kernel_size=32, stride=32)
    image = torch.randn(1, 3, 64, 96)
    alone = model(image)
    padded = torch.zeros(1, 3, 128, 128)
    padded[..., :64, :96] = image
    mask = torch.zeros(1, 128, 128, dtype=torch.bool)
    mask[..., :64, :96] = True
    together = model(padded, mask)
    torch.testing.assert_close(together.logits, alone.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.boxes, alone.boxes, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(padded).logits, alone.logits, atol=1e-3)


def test_frozen_batch_norm_stays_frozen_and_batch_norm_trains():
    frozen = tiny_detr()
    assert not any("running_mean" in n for n, _ in frozen.named_parameters())
    trainable = tiny_detr(backbone_norm="batch", frozen_stages=0).train()
    before = trainable.backbone.layer1[0].bn1.running_mean.clone()
    trainable(torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, trainable.backbone.layer1[0].bn1.running_mean)
    staged = tiny_detr(backbone_norm="batch", frozen_stages=1).train()
    before = staged.backbone.layer1[0].bn1.running_mean.clone()
    staged(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(
        before, staged.backbone.layer1[0].bn1.running_mean
    )  # a frozen stage keeps its statistics


def test_bad_inputs_and_configs():
    model = tiny_detr().eval()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="pixel_mask"):
        model(torch.randn(1, 3, 64, 64), torch.ones(1, 32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="backbone must be one of"):
        DetrConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="dilation"):
        DetrConfig(backbone="resnet18", dilation=True)
    with pytest.raises(ValueError, match="class_names"):
        DetrConfig(num_classes=2, class_names=["a"])
    with pytest.raises(ValueError, match="larger than the learned"):
        tiny_detr(position="learned").eval()(torch.randn(1, 3, 64, 32 * 51))


def test_save_load_round_trip(tmp_path):
    model = tiny_detr(class_names=["circle", "square", "triangle"]).eval()
    model.save_pretrained(tmp_path / "detr")
    loaded = DETR.from_pretrained(tmp_path / "detr")
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(loaded(images).logits, model(images).logits)
    assert loaded.config.class_names == ["circle", "square", "triangle"]


def hf_detr(tmp_path, **kwargs):
    fields = dict(
        backbone="resnet18",
        use_timm_backbone=True,
        use_pretrained_backbone=False,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=5,
        num_labels=3,
    )
    torch.manual_seed(1)
    reference = transformers.DetrForObjectDetection(transformers.DetrConfig(**{**fields, **kwargs})).eval()
    with torch.no_grad():  # random statistics and weights everywhere, so that nothing is left at an identity
        for name, tensor in reference.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.05)
    reference.save_pretrained(tmp_path / "hf")
    return reference


@pytest.mark.parametrize("kwargs", [dict(), dict(position_embedding_type="learned")])
def test_hugging_face_detr_parity(tmp_path, kwargs):
    reference = hf_detr(tmp_path, **kwargs)
    ours = DETR.from_pretrained(tmp_path / "hf")
    assert ours.config.num_classes == 3 and ours.config.class_names == ["LABEL_0", "LABEL_1", "LABEL_2"]
    images = torch.randn(2, 3, 96, 128)
    mask = torch.ones(2, 96, 128, dtype=torch.long)
    mask[1, :, 64:] = 0  # the second image is padded on the right
    mask[1, 80:] = 0
    with torch.no_grad():
        expected = reference(pixel_values=images, pixel_mask=mask)
        got = ours(images, mask.bool())
    torch.testing.assert_close(got.logits, expected.logits, **TOL)
    torch.testing.assert_close(got.boxes, expected.pred_boxes, **TOL)


def test_hugging_face_config_checks(tmp_path):
    hf_detr(tmp_path)
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert detr_config_from_hf(hf).backbone == "resnet18"
    # transformers leaves default labels out of config.json: the class head's rows tell the count
    bare = {k: v for k, v in hf.items() if k not in ("id2label", "label2id")}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(bare))
    assert DETR.from_pretrained(tmp_path / "hf").config.num_classes == 3
    with pytest.raises(ValueError, match="transformers ResNet backbone"):
        detr_config_from_hf({**hf, "use_timm_backbone": False, "backbone_config": {"model_type": "resnet"}})
    with pytest.raises(ValueError, match="not supported"):
        detr_config_from_hf({**hf, "backbone_config": {**hf["backbone_config"], "backbone": "efficientnet_b0"}})
