"""Fine-tuning: --init from timm / Hugging Face / our own weights, a new head, a frozen backbone, layer-wise decay."""

import json

import pytest
import torch
from click.testing import CliRunner
from engine_tiny_run import build_model, run, single_thread
from safetensors.torch import load_file, save_file
from test_vision_cli import CLASSES

from polyformer.apps.cli import main
from polyformer.apps.engine import TrainingConfig, load_for_finetuning, parameter_groups
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.apps.recipes.vision_classification import initial_model
from polyformer.vision.vit import ViT, ViTConfig, convert_hf_state_dict, convert_timm_state_dict

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    """A timm ViT-Tiny (at 32x32: a 2x2 patch grid) with 5 classes, saved as timm saves weights."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32)
    path = tmp_path_factory.mktemp("timm") / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, convert_timm_state_dict(model.state_dict())


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A small Hugging Face ViTForImageClassification with 5 labels, saved with save_pretrained."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8,
        num_labels=5,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config)
    path = tmp_path_factory.mktemp("hf") / "vit"
    model.save_pretrained(path)
    return path, convert_hf_state_dict(model.state_dict())


def _train(folder, out, init, *extra):
    args = ["vision", "train", str(folder), "--init", str(init), "--batch-size", "8", "--out", str(out)]
    args += ["--skip-bad", "train.plot=false", "train.precision=fp32", "train.checkpoint_every=2", *extra]
    return CliRunner().invoke(main, args)


def _assert_backbone(weights, source, equal=True):
    backbone = [name for name in source if not name.startswith("head.")]
    same = [torch.equal(weights[name], source[name]) for name in backbone]
    assert all(same) if equal else not all(same)


def test_timm_file_with_other_classes_new_head_and_backbone_frozen_for_the_run(image_folder, timm_file, tmp_path):
    path, source = timm_file
    result = _train(image_folder, tmp_path / "run", path, "--max-steps", "3", "--freeze-backbone-steps", "3")
    assert result.exit_code == 0, result.output
    assert "model: ViT from timm weights: patch 16 at 32, width 192, 12 layers" in result.output
    assert f"init: backbone (150 tensors) loaded from timm vit_tiny_patch16_32 weights {path}" in result.output
    assert "head: new (3 classes; checkpoint had 5) - reinitialised" in result.output
    assert "backbone frozen for the whole run (only the head trains: a linear probe)" in result.output
    weights = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    _assert_backbone(weights, source)
    assert weights["head.weight"].shape == (3, 192)
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["class_names"] == list(CLASSES)


def test_hf_directory_backbone_frozen_for_some_steps_then_trained(image_folder, hf_dir, tmp_path):
    path, source = hf_dir
    out = tmp_path / "run"
    result = _train(image_folder, out, path, "--max-steps", "4", "--freeze-backbone-steps", "2", "--layer-decay", "0.5")
    assert result.exit_code == 0, result.output
    assert f"init: backbone (30 tensors) loaded from Hugging Face ViT {path}, 5 classes" in result.output
    assert "head: new (3 classes; checkpoint had 5) - reinitialised" in result.output
    assert "layer decay 0.5" in result.output and "backbone frozen for the first 2 steps" in result.output
    step2 = load_file(str(out / "checkpoints" / "step-00000002" / "model.safetensors"))
    _assert_backbone(step2, source)  # frozen: exactly the source weights
    assert not torch.equal(step2["head.weight"], load_file(str(out / "model" / "model.safetensors"))["head.weight"])
    _assert_backbone(load_file(str(out / "model" / "model.safetensors")), source, equal=False)  # then trained


def test_same_classes_in_another_order_keep_the_head_with_rows_reordered(tmp_path):
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16, patch_size=4, d_model=32, num_layers=2, num_heads=4, d_ff=64, num_classes=3,
        class_names=["red", "green", "blue"],
    )  # fmt: skip
    source = ViT(config)
    source.save_pretrained(tmp_path / "model")
    model, lines = initial_model({"init": str(tmp_path / "model")}, CLASSES)
    assert lines[-1] == "head: loaded from the checkpoint, rows reordered to the data's class order (3 classes)"
    torch.testing.assert_close(model.head.weight, source.head.weight[[2, 1, 0]], rtol=0, atol=0)
    torch.testing.assert_close(model.head.bias, source.head.bias[[2, 1, 0]], rtol=0, atol=0)
    same, _ = initial_model({"init": str(tmp_path / "model")}, ["red", "green", "blue"])
    assert torch.equal(same.head.weight, source.head.weight)
    _, lines = initial_model({"init": str(tmp_path / "model")}, ["cat", "dog", "cow"])
    assert lines[-1] == "head: new (3 classes, other names than the checkpoint's) - reinitialised"
    # another image size resamples the position table; shape fields cannot change
    resized, lines = initial_model({"init": str(tmp_path / "model"), "image_size": 24}, CLASSES)
    assert resized.config.image_size == 24 and "position table resampled to 24" in lines[0]
    with pytest.raises(ConfigError, match="model.init: cannot adapt ViT weights: patch_size differs"):
        initial_model({"init": str(tmp_path / "model"), "patch_size": 8}, CLASSES)


def test_backbone_mismatch_is_an_error_naming_the_tensors():
    model = ViT(ViTConfig(image_size=16, patch_size=4, d_model=32, num_layers=2, num_heads=4, d_ff=64, num_classes=3))
    state = dict(model.state_dict())
    state.pop("norm.weight")
    state["encoder.layers.0.feed_forward.fc1.bias"] = torch.zeros(7)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as error:
        load_for_finetuning(model, state, "weights X")
    message = str(error.value)
    assert message.startswith("weights X does not fit this ViT's backbone")
    assert "missing from the checkpoint: norm.weight" in message and "not in the model: extra.weight" in message
    assert "encoder.layers.0.feed_forward.fc1.bias (7,) vs (64,)" in message


def test_bad_fine_tuning_options_are_clear(image_folder, timm_file, tmp_path):
    path, _ = timm_file
    both = CliRunner().invoke(main, ["vision", "train", str(image_folder), "--init", str(path), "--preset", "vit_nano"])
    assert both.exit_code == 2 and "not both" in both.output
    for option, value in (("--layer-decay", "0"), ("--layer-decay", "1.5"), ("--freeze-backbone-steps", "-1")):
        result = _train(image_folder, tmp_path / "x", path, option, value)
        assert result.exit_code == 2 and option in result.output
    missing = _train(image_folder, tmp_path / "x", tmp_path / "nothing.safetensors")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    shape = _train(image_folder, tmp_path / "x", path, "model.d_ff=100")
    assert shape.exit_code == 1 and "model.init: cannot adapt ViT weights: d_ff differs" in shape.output
    assert not (tmp_path / "x").exists()
    for field, value in (("layer_decay", 0.0), ("layer_decay", 2.0), ("freeze_backbone_steps", -1)):
        with pytest.raises(ValueError, match=field):
            TrainingConfig(**{field: value})


def test_layer_decay_scales_match_timm():
    from timm.optim import param_groups_layer_decay

    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, depth=4)
    ours = ViT(ViTConfig(image_size=32, patch_size=16, d_model=192, num_layers=4, num_heads=3, d_ff=768, num_classes=5))
    expected = {}
    for group in param_groups_layer_decay(
        reference, 0.05, no_weight_decay_list=reference.no_weight_decay(), layer_decay=0.6
    ):
        names = {id(p): n for n, p in reference.named_parameters()}
        for parameter in group["params"]:
            expected[names[id(parameter)]] = (group["lr_scale"], group["weight_decay"])
    renamed = convert_timm_state_dict({name: torch.zeros(0) for name in expected})
    ours_of = dict(zip(expected, renamed))
    found = {}
    names = {id(p): n for n, p in ours.named_parameters()}
    for group in parameter_groups(ours, 0.05, layer_decay=0.6):
        for parameter in group["params"]:
            found[names[id(parameter)]] = (group["lr_scale"], group["weight_decay"])
    assert set(found) == set(renamed)
    for theirs, mine in ours_of.items():
        assert found[mine] == pytest.approx(expected[theirs]), (theirs, mine)


def test_a_frozen_backbone_resumes_to_the_same_weights(tmp_path):
    """Backbone unchanged for exactly N steps, then trained; a crash and resume in between changes nothing."""
    initial = build_model().state_dict()
    settings = dict(max_steps=12, freeze_backbone_steps=6, checkpoint_every=3, keep_last=4, dropout=0.1)
    with single_thread():
        baseline, _ = run(tmp_path / "baseline", **settings)
    step = {n: load_file(str(tmp_path / "baseline" / "checkpoints" / f"step-0000000{n}" / "model.safetensors"))
            for n in (3, 6, 9)}  # fmt: skip
    for name in ("inp.weight", "inp.bias", "norm.weight"):
        assert torch.equal(step[6][name], initial[name]) and not torch.equal(step[9][name], initial[name])
    assert not torch.equal(step[3]["head.weight"], initial["head.weight"])

    def crash(number, values):
        if number == 5:
            raise RuntimeError("crash")

    with single_thread(), pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "crashed", on_step_end=crash, **settings)
    with single_thread():
        resumed, _ = run(tmp_path / "crashed", resume=str(tmp_path / "crashed"), **settings)
    for name, value in baseline.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_init_takes_the_shipped_checkpoint_and_preset_works_with_the_fine_tuning_config(image_folder, tmp_path):
    shipped = _train(image_folder, tmp_path / "a", "vit_fashion_mnist", "--max-steps", "1")
    assert shipped.exit_code == 0, shipped.output
    assert "loaded from polyformer ViT model" in shipped.output and "vit_fashion_mnist" in shipped.output
    assert "head: new (3 classes; checkpoint had 10) - reinitialised" in shipped.output
    args = ["vision", "train", str(image_folder), "--config", "image_folder_finetune", "--preset", "vit_nano_patch4_32"]
    args += ["--max-steps", "1", "--batch-size", "8", "--skip-bad", "--out", str(tmp_path / "b")]
    scratch = CliRunner().invoke(main, args)
    assert scratch.exit_code == 0, scratch.output
    assert "model: vit_nano_patch4_32" in scratch.output and "layer decay 0.75" in scratch.output
