"""read_vit_source reads every kind of ViT checkpoint --init accepts; adapt_vit_state fits one to another image size."""

import json

import pytest
import torch
from safetensors.torch import save_file
from test_vit_convert import hf_vit, save_timm, timm_vit

from polyformer.vision.vit import ViT, ViTConfig, adapt_vit_state, read_vit_source, timm_name_from_state

SMALL = ViTConfig(
    image_size=16, patch_size=4, d_model=32, num_layers=2, num_heads=4, d_ff=64, num_classes=3,
    class_names=["a", "b", "c"],
)  # fmt: skip


def _same(state, model):
    own = model.state_dict()
    assert set(state) == set(own)
    for name, tensor in own.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, msg=name)


def test_polyformer_model_checkpoint_and_run_directories(tmp_path):
    torch.manual_seed(0)
    model = ViT(SMALL)
    model.save_pretrained(tmp_path / "run" / "model")
    source = read_vit_source(tmp_path / "run" / "model")
    assert source.kind == "polyformer" and source.config == SMALL
    assert "3 classes" in source.description and "model" in source.description
    _same(source.state, model)
    # a run directory: its best model, else its final model
    assert read_vit_source(tmp_path / "run").path == tmp_path / "run" / "model"
    model.save_pretrained(tmp_path / "run" / "best_model")
    assert read_vit_source(tmp_path / "run").path == tmp_path / "run" / "best_model"
    # a file of the model directory reads the directory
    assert read_vit_source(tmp_path / "run" / "model" / "model.safetensors").path == tmp_path / "run" / "model"
    # a training checkpoint directory (model files plus training_state.pt)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000004"
    model.save_pretrained(checkpoint)
    (checkpoint / "training_state.pt").write_bytes(b"")
    assert "training checkpoint" in read_vit_source(checkpoint).description


def test_timm_weights_file_and_hub_directory(tmp_path):
    reference = timm_vit()
    path = save_timm(reference, tmp_path / "tiny.safetensors")
    source = read_vit_source(path)
    assert source.kind == "timm" and "vit_tiny_patch16_32" in source.description
    assert source.config.num_classes == 5 and source.config.image_size == 32
    _same(source.state, ViT.from_timm("vit_tiny_patch16_32", path))
    # a torch training checkpoint of the same weights
    assert set(read_vit_source(save_timm(reference, tmp_path / "tiny.pth")).state) == set(source.state)
    # timm's hub layout: config.json with the architecture, label names and normalisation
    hub = tmp_path / "hub"
    hub.mkdir()
    save_timm(reference, hub / "model.safetensors")
    labels = ["l0", "l1", "l2", "l3", "l4"]
    pretrained_cfg = {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    config = {"architecture": "vit_tiny_patch16_32", "label_names": labels, "pretrained_cfg": pretrained_cfg}
    (hub / "config.json").write_text(json.dumps(config))
    from_hub = read_vit_source(hub)
    assert from_hub.kind == "timm" and from_hub.config.class_names == labels
    assert list(from_hub.config.image_mean) == [0.1, 0.2, 0.3] and list(from_hub.config.image_std) == [0.4, 0.5, 0.6]


def test_timm_name_is_inferred_from_the_shapes():
    state = timm_vit(img_size=48).state_dict()
    assert timm_name_from_state(state) == "vit_tiny_patch16_48"
    with pytest.raises(ValueError, match="match no named timm ViT size"):
        timm_name_from_state({**state, "patch_embed.proj.weight": torch.zeros(100, 3, 16, 16)})


def test_hugging_face_directory(tmp_path):
    reference = hf_vit(num_labels=4, id2label={i: f"c{i}" for i in range(4)}, label2id={f"c{i}": i for i in range(4)})
    reference.save_pretrained(tmp_path / "hf")
    source = read_vit_source(tmp_path / "hf")
    assert source.kind == "huggingface" and source.config.class_names == ["c0", "c1", "c2", "c3"]
    _same(source.state, ViT.from_pretrained(tmp_path / "hf"))


def test_errors_name_the_path_and_what_is_accepted(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found; expected one of"):
        read_vit_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without config.json, model/ or best_model/"):
        read_vit_source(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="is not a weights file"):
        read_vit_source(tmp_path / "notes.txt")
    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="other.safetensors"):
        read_vit_source(tmp_path / "other.safetensors")
    ViT(SMALL).save_pretrained(tmp_path / "ours")  # our weights without their config: pointed at the directory
    with pytest.raises(ValueError, match="give the model directory"):
        read_vit_source(save_timm(ViT(SMALL), tmp_path / "loose.safetensors"))


def test_adapted_weights_give_the_source_models_outputs_at_the_new_size():
    torch.manual_seed(0)
    source = ViT(SMALL).eval()
    target_config = SMALL.replace(image_size=24)
    target = ViT(target_config).eval()
    target.load_state_dict(adapt_vit_state(source.state_dict(), SMALL, target_config))
    images = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(target(images), source(images), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="d_model differs"):
        adapt_vit_state(source.state_dict(), SMALL, SMALL.replace(d_model=64, num_heads=4))
