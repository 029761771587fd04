"""`polyformer vision train | eval | predict` on a tiny generated image folder, resume included."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from polyformer.apps.cli import common as cli_common  # the module that launches torchrun
from polyformer.apps.cli import main
from polyformer.apps.recipes.toml_config import apply_overrides, parse_override
from polyformer.apps.recipes.vision_classification import load_recipe

CLASSES = ("blue", "green", "red")


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
    held_out = json.loads((out / "split.json").read_text())["val_keys"]
    assert len(held_out) == 3  # 10% of the 30 readable images
    assert report["classes"] == list(CLASSES) and report["images"] == 3 and report["skipped"] == 1
    assert sum(map(sum, report["confusion_matrix"])) == 3 and png.stat().st_size > 1000
    assert "held out" in report["split"]
    args = ["vision", "eval", str(image_folder), "--model", str(out), "--skip-bad", "--confusion-png", str(png)]
    result = CliRunner().invoke(main, [*args, "--split", "all"])
    assert result.exit_code == 0 and "all 30 of" in result.output and "including any the model was trained on" in (
        result.output
    )
    result = CliRunner().invoke(main, [*args, "--split", "test"])
    assert result.exit_code == 1 and "has no test split" in result.output and "--split val" in result.output

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

    monkeypatch.setattr(cli_common, "launch_with_torchrun", fake_launch)
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


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.pretrained=true", "unknown key model.pretrained;"),
        ("model.backnd=eager", "unknown key model.backnd; did you mean model.backend?"),
        ("train.epochs=abc", "train.epochs: expected a number (float), got 'abc' (str)"),
        ("data.crop_scale=[0.5]", "data.crop_scale: expected a list of 2 numbers, got [0.5] (list)"),
        ("model.preset=vit_huge_nothing", "model.preset: unknown ViT preset 'vit_huge_nothing'"),
        ("model.num_heads=5", "model: "),  # d_model 64 is not divisible by 5 heads: ViTConfig's own check
        ("model.num_classes=3", "model.num_classes is set from the training data's classes"),
    ],
)
def test_bad_overrides_give_one_line_and_leave_no_files(image_folder, tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    args = ["vision", "train", str(image_folder), "--max-steps", "1", "--skip-bad", override]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, nothing written


def _folder(root, classes, per_class=3):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_single_class_data_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _folder(tmp_path / "data", ["only"])
    result = CliRunner().invoke(main, ["vision", "train", str(data), "--max-steps", "1"])
    assert result.exit_code == 1 and "has a single class (only)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_used_run_folder_is_refused_unless_overwrite(image_folder, tmp_path):
    out = tmp_path / "run"
    assert _train(image_folder, out, "--max-steps", "2").exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    result = _train(image_folder, out, "--max-steps", "2")
    assert result.exit_code == 1 and "already holds a training run" in result.output
    assert (out / "metrics.jsonl").read_text() == before
    result = _train(image_folder, out, "--max-steps", "2", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sum('"event": "start"' in line for line in (out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_without_out_continues_in_the_run_folder(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["vision", "train", str(image_folder), "--preset", "vit_nano_patch4_32", "--batch-size", "8", "--skip-bad"]
    args += ["train.plot=false", "train.precision=fp32", "--max-steps"]
    assert CliRunner().invoke(main, [*args, "2"]).exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("image_folder-")
    result = CliRunner().invoke(main, [*args, "4", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "runs").iterdir()) == [run] and (run / "checkpoints" / "step-00000004").is_dir()


def test_quiet_keeps_the_result_line(image_folder, tmp_path):
    result = _train(image_folder, tmp_path / "run", "--max-steps", "2")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 1 and lines[0].startswith("done in") and "final model in" in lines[0]


def test_the_run_start_summary_says_what_will_happen(image_folder, tmp_path):
    args = ["vision", "train", str(image_folder), "--preset", "vit_nano_patch4_32", "--batch-size", "8", "--skip-bad"]
    result = CliRunner().invoke(main, [*args, "--max-steps", "2", "--out", str(tmp_path / "run"), "train.plot=false"])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "data: ", "27 training / 3 validation images", "3 classes (blue, green, red)",
        "images 3x32x32 after transforms",
        "augmentation: crop scale", "model: vit_nano_patch4_32", "random initialisation",
        "skipped 1 unreadable images: ", "broken.png", f"run: {tmp_path / 'run'} (new run)", "steps: 2",
        "precision ", "checkpoints: every 1 steps", "best model by accuracy (max)",
    ):  # fmt: skip
        assert expected in out, expected


def test_eval_and_predict_need_a_model_and_an_existing_output_folder(image_folder, tmp_path):
    result = CliRunner().invoke(main, ["vision", "eval", "embedded"])
    assert result.exit_code == 2 and "--model is required" in result.output and "vit_fashion_mnist" in result.output
    result = CliRunner().invoke(main, ["vision", "predict", str(image_folder / "red" / "0.png")])
    assert result.exit_code == 2 and "--model vit_fashion_mnist" in result.output
    missing = tmp_path / "nowhere" / "cm.png"
    result = CliRunner().invoke(
        main, ["vision", "eval", "embedded", "--model", "vit_fashion_mnist", "--confusion-png", str(missing)]
    )
    assert result.exit_code == 2 and "does not exist" in result.output and not (tmp_path / "nowhere").exists()
    result = CliRunner().invoke(main, ["vision", "train", str(image_folder), "--nproc", "0"])
    assert result.exit_code == 2 and "--nproc" in result.output


def test_eval_scores_exactly_the_held_out_images_and_warns_on_changed_data(image_folder, tmp_path):
    import shutil

    from polyformer.apps.recipes.vision_classification import open_eval_split
    from polyformer.vision.vit import ViT

    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    (data / "red" / "broken.png").unlink()
    out = tmp_path / "run"
    assert _train(data, out, "--max-steps", "2").exit_code == 0
    held_out = json.loads((out / "split.json").read_text())["val_keys"]
    model = ViT.from_pretrained(out / "model")
    chosen = open_eval_split(model, str(data), None, run_dir=out)
    keys = chosen.dataset.dataset.item_keys()
    assert sorted(keys[i] for i in chosen.dataset.indices) == sorted(held_out) and chosen.warnings == []
    (data / "blue" / "extra.png").write_bytes((data / "blue" / "0.png").read_bytes())
    changed = open_eval_split(model, str(data), "val", run_dir=out)
    assert len(changed.dataset) == len(held_out) and "data changed since the split was made" in changed.warnings[0]
    with pytest.raises(ValueError, match="no held-out split"):
        open_eval_split(model, "embedded", "val", run_dir=None)


def test_model_accepts_the_weights_file(tmp_path):
    from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS

    weights = SHIPPED_CHECKPOINTS["vit_fashion_mnist"] / "model.safetensors"
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(image)
    result = CliRunner().invoke(main, ["vision", "predict", str(image), "--model", str(weights)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"model: {weights.parent}") and "x.png: " in result.output


def test_an_interrupted_train_exits_with_the_signal_code(monkeypatch, image_folder, tmp_path):
    from pathlib import Path

    from polyformer.apps.engine import TrainingInterrupted
    from polyformer.apps.recipes import vision_classification

    def interrupted(recipe, echo):
        raise TrainingInterrupted(3, Path("r/checkpoints/step-00000003"), Path("r"), 2)

    monkeypatch.setattr(vision_classification, "train_vision_classifier", interrupted)
    result = CliRunner().invoke(main, ["vision", "train", str(image_folder), "--skip-bad"])
    assert result.exit_code == 130 and "interrupted by SIGINT after step 3" in result.output
    assert "--resume r" in result.output
