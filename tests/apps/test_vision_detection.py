"""DETR end to end: a tiny detector overfits one batch of shapes through ``vision detect-train
--overfit-batch``; ``detect-eval``, ``detect`` and the object-detection pipeline use the result;
fine-tuning from a Hugging Face DETR directory makes a new class head; bad set-ups are clear errors."""

import json

import pytest
import torch
from cli_runs import metrics_lines, polyformer_process
from click.testing import CliRunner
from PIL import Image

from polyformer.apps.cli import main
from polyformer.apps.engine import load_for_finetuning
from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, pipeline
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.apps.recipes.vision_detection import DetectionTask, load_detection_recipe
from polyformer.vision.data import open_detection_data
from polyformer.vision.detr import DETR, DetrConfig, SetCriterion

TINY = [
    "model.d_model=64", "model.num_heads=4", "model.d_ff=128", "model.encoder_layers=2", "model.decoder_layers=2",
    "model.dropout=0.0", "train.lr=1e-3", "train.warmup_steps=20", "train.eval_every=150", "train.log_every=50",
]  # fmt: skip


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("detr") / "run"
    args = ["vision", "detect-train", "shapes", *TINY, "--overfit-batch", "--num-queries", "6", "--batch-size", "2"]
    result = CliRunner().invoke(main, [*args, "--max-steps", "150", "--out", str(run), "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    return run, result.output


def test_a_tiny_detr_overfits_one_batch_to_near_perfect_matching(overfit_run):
    run, output = overfit_run
    assert "validation images: the same 2 training images (data.overfit_batch)" in output
    final = metrics_lines(run, "eval")[-1]
    assert final["class_error"] == 0 and final["map_50"] > 0.9, final
    train_lines = metrics_lines(run, "train")
    assert train_lines[-1]["loss_l1"] < 0.3 * train_lines[0]["loss_l1"] and "class_error" in train_lines[-1]
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["class_names"] == ["circle", "square", "triangle"] and saved["num_queries"] == 6


def test_detect_eval_reports_map_and_draws_boxes(overfit_run, tmp_path):
    run, _ = overfit_run
    png = tmp_path / "boxes.png"
    args = ["vision", "detect-eval", "shapes", "--model", str(run), "--png", str(png), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 60 and 0 <= report["map_50"] <= 1 and len(report["map_per_class"]) == 3
    assert report["map_75"] <= report["map_50"] and Image.open(png).size == (4 * 256, 256)  # drawn twice as large
    args = ["vision", "detect-eval", "shapes", "--model", str(run), "--split", "train", "--png", str(png)]
    plain = CliRunner().invoke(main, args)
    assert "240 images of shapes (train)" in plain.output and "circle" in plain.output


def test_detect_command_and_pipeline_give_pixel_boxes(overfit_run, tmp_path):
    run, _ = overfit_run
    sample = open_detection_data("shapes", "train").samples[0]
    args = ["vision", "detect", str(sample.image), "--model", str(run), "--threshold", "0.3"]
    result = CliRunner().invoke(main, [*args, "--json", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)[0]["detections"]
    assert found and {"label", "score", "box"} <= set(found[0])
    assert (tmp_path / f"{sample.image.stem}_detections.png").is_file()
    detector = pipeline("object-detection", model=run, threshold=0.3)
    assert detector(str(sample.image)) == detector([Image.open(sample.image)])[0]
    # the same picture at twice the size: boxes in the bigger image's pixels
    big = Image.open(sample.image).resize((256, 256))
    small_boxes = torch.tensor([d["box"] for d in detector(str(sample.image))])
    big_boxes = torch.tensor([d["box"] for d in detector(big)])
    assert big_boxes.shape == small_boxes.shape and (big_boxes - 2 * small_boxes).abs().max() < 6
    found = torch.tensor([d["box"] for d in detector(str(sample.image), threshold=0.5)])
    nearest = (found[:, None] - sample.boxes[None]).abs().amax(dim=-1).amin(dim=0)  # each true box's closest match
    assert nearest.max() < 4  # the fitted batch is found where it is, in the image's pixels


def test_fine_tuning_a_hugging_face_detr_makes_a_new_class_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("timm")
    hf_config = transformers.DetrConfig(
        backbone="resnet18", use_timm_backbone=True, use_pretrained_backbone=False, d_model=32, encoder_layers=1,
        decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, num_queries=8, num_labels=5,
    )  # fmt: skip
    transformers.DetrForObjectDetection(hf_config).save_pretrained(tmp_path / "hf")
    args = ["vision", "detect-train", "shapes", "--init", str(tmp_path / "hf"), "--freeze-backbone"]
    args += ["model.min_size=128", "model.max_size=128", "data.train_limit=4", "data.eval_limit=2"]
    result = CliRunner().invoke(main, [*args, "--max-steps", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "head: new (3 classes; checkpoint had 5) - reinitialised" in result.output, result.output
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["num_classes"] == 3 and saved["frozen_stages"] == 4 and saved["d_model"] == 32


def test_same_classes_in_another_order_reorder_the_head_and_keep_no_object():
    source = DETR(DetrConfig(backbone="resnet18", d_model=32, num_heads=4, encoder_layers=1, decoder_layers=1,
                             d_ff=32, num_queries=4, num_classes=3, class_names=["b", "a", "c"]))  # fmt: skip
    target = DETR(source.config.replace(class_names=["a", "b", "c"]))
    lines = load_for_finetuning(target, source.state_dict(), "source", ["a", "b", "c"], ["b", "a", "c"])
    assert "rows reordered to the data's class order (3 classes)" in lines[-1]
    weight = source.class_head.weight
    torch.testing.assert_close(target.class_head.weight, weight[[1, 0, 2, 3]])  # "no object" stays last


def test_bad_set_ups_are_clear_errors(tmp_path):
    result = CliRunner().invoke(main, ["vision", "detect-train", "shapes", "--num-queries", "3", "--max-steps", "1"])
    assert result.exit_code != 0 and "has 5 objects but the model has 3 queries" in result.output
    with pytest.raises(ConfigError, match="model.num_classes is set from the training data"):
        load_detection_recipe("detr_shapes", ["model.num_classes=4"])
    with pytest.raises(ConfigError, match="model.preset must be one of detr_"):
        load_detection_recipe("detr_shapes", ["model.preset=vit_nano_patch4_28"])
    missing = CliRunner().invoke(main, ["vision", "detect-eval", "shapes"])
    assert missing.exit_code != 0 and "--model is required" in missing.output


def test_stuck_training_warns_with_the_usual_fixes():
    said = []
    task = DetectionTask(SetCriterion(3), warn_after=2, warn=said.append)
    task._values = {"class_error": 100.0}
    task.step_values()
    assert not said
    task.step_values()
    assert len(said) == 1 and "class error is still 100% after 2 steps" in said[0] and "overfit_batch" in said[0]
    task.on_eval(2, {"map_50": 0.0})
    assert len(said) == 2 and "mAP@0.5 is 0.000" in said[1]
    task.on_eval(4, {"map_50": 0.0})
    assert len(said) == 2  # once


def test_two_processes_train_and_validate(tmp_path):
    """--nproc 2: the box count is summed across processes and mAP is gathered from both."""
    args = ["vision", "detect-train", "shapes", *TINY, "--num-queries", "6", "--batch-size", "4", "--nproc", "2"]
    args += ["data.train_limit=8", "data.eval_limit=4", "train.plot=false", "--max-steps", "2"]
    done = polyformer_process(*args, "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch 4 = 2 process(es)" in done.stdout
    final = metrics_lines(tmp_path / "run", "eval")[-1]
    assert 0 <= final["map_50"] <= 1 and final["class_error"] >= 0


def test_the_shipped_detector_finds_the_held_out_shapes(tmp_path):
    """The demo's detection part: the shipped DETR reaches its stated mAP@0.5 on the embedded test split."""
    from polyformer.apps.demos.vision import run_detection_demo

    lines = []
    score = run_detection_demo(lines.append, tmp_path / "demo.png")
    assert lines[0].startswith("[vision] shipped DETR detr_shapes") and score >= 0.9
    assert sum(p.stat().st_size for p in SHIPPED_CHECKPOINTS["detr_shapes"].iterdir()) <= 25e6
    assert (tmp_path / "demo.png").is_file() and lines[-1].startswith("  mAP@0.5 on all 60 test images")
    assert pipeline("object-detection")(str(open_detection_data("shapes", "test").samples[0].image))
