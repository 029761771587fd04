"""`polyformer vision train | eval | predict` on a tiny generated image folder, resume included."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from polyformer.apps.cli import main
from polyformer.apps.cli import vision as cli_vision  # the module
from polyformer.apps.recipes.toml_config import apply_overrides, parse_override
from polyformer.apps.recipes.vision_classification import load_recipe

CLASSES = ("blue", "green", "red")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three colour classes of noisy 20x24 RGB images, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for channel, name in zip((2, 1, 0), CLASSES):
        (root / name).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 80, (20, 24, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "red" / "broken.png").write_bytes(b"not an image")
    return root


def _train(folder, out, *extra):
    args = ["vision", "train", str(folder), "--preset", "vit_nano_patch4_32", "--batch-size", "8", "--out", str(out)]
    args += ["--skip-bad", "--quiet", "train.checkpoint_every=2", "train.plot=false", "train.precision=fp32", *extra]
    return CliRunner().invoke(main, args)


def test_train_eval_predict_and_resume(image_folder, tmp_path):
    out = tmp_path / "run"
    result = _train(image_folder, out, "--max-steps", "4")
    assert result.exit_code == 0, result.output
    assert (out / "model" / "model.safetensors").is_file() and (out / "checkpoints" / "step-00000004").is_dir()
    assert json.loads((out / "recipe.json").read_text())["model"]["preset"] == "vit_nano_patch4_32"

    png = tmp_path / "cm.png"
    result = CliRunner().invoke(
        main,
        ["vision", "eval", str(image_folder), "--model", str(out), "--skip-bad", "--json", "--confusion-png", str(png)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["classes"] == list(CLASSES) and report["images"] == 30 and report["skipped"] == 1
    assert sum(map(sum, report["confusion_matrix"])) == 30 and png.stat().st_size > 1000

    images = [str(image_folder / "red" / "0.png"), str(image_folder / "blue" / "3.png")]
    result = CliRunner().invoke(
        main, ["vision", "predict", *images, "--model", str(out / "model"), "--json", "--top-k", "2"]
    )
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.output)
    assert [p["image"] for p in predictions] == images
    assert all(
        len(p["predictions"]) == 2 and p["predictions"][0]["score"] >= p["predictions"][1]["score"] for p in predictions
    )

    resumed = tmp_path / "resumed"
    result = _train(image_folder, resumed, "--max-steps", "4", "--resume", str(out / "checkpoints" / "step-00000002"))
    assert result.exit_code == 0, result.output
    expected, got = (
        load_file(str(out / "model" / "model.safetensors")),
        load_file(str(resumed / "model" / "model.safetensors")),
    )
    for name in expected:
        assert (expected[name] - got[name]).abs().max() < 1e-6, name


def test_bad_inputs_give_one_clear_error(image_folder, tmp_path):
    result = _train(image_folder, tmp_path / "a", "--max-steps", "1", "train.no_such_field=3")
    assert result.exit_code != 0 and "no_such_field" in result.output
    result = _train(image_folder, tmp_path / "b", "--max-steps", "1", "not-an-override")
    assert result.exit_code != 0 and "key=value" in result.output
    args = ["vision", "train", str(image_folder), "--max-steps", "1", "--out", str(tmp_path / "c"), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "broken.png" in result.output  # without --skip-bad
    result = CliRunner().invoke(main, ["vision", "eval", "embedded", "--model", str(tmp_path)])
    assert result.exit_code != 0 and "config.json" in result.output


def test_nproc_reruns_the_command_under_torchrun(monkeypatch, image_folder):
    launched = {}

    def fake_launch(nproc, argv):
        launched.update(nproc=nproc, argv=argv)
        return 0

    monkeypatch.setattr(cli_vision, "launch_with_torchrun", fake_launch)
    result = CliRunner().invoke(
        main, ["vision", "train", str(image_folder), "lr=0.01", "--nproc", "2", "--epochs", "3", "--skip-bad"]
    )
    assert result.exit_code == 0, result.output
    assert launched["nproc"] == 2
    argv = launched["argv"]
    assert argv[:4] == ["vision", "train", str(image_folder), "lr=0.01"] and "--nproc" not in argv
    assert argv[argv.index("--epochs") + 1] == "3.0" and "--skip-bad" in argv


def test_overrides_are_toml_literals_with_optional_sections():
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)
    assert parse_override("data.augment=trivialaugment") == (["data", "augment"], "trivialaugment")
    config = apply_overrides({"train": {"lr": 1.0}, "data": {"crop_scale": [1, 1]}}, ["lr=2", "crop_scale=[0.5, 1.0]"])
    assert config == {"train": {"lr": 2}, "data": {"crop_scale": [0.5, 1.0]}}
    with pytest.raises(ValueError, match="section"):
        apply_overrides({"train": {}}, ["unknown=1"])


def test_shipped_recipes_load():
    recipe = load_recipe("fashion_mnist_embedded", ["train.epochs=1"])
    assert recipe.data.train == "embedded" and recipe.train.epochs == 1 and recipe.model["preset"].startswith("vit_")
    assert load_recipe("fashion_mnist_full").data.train == "fashion-mnist"
