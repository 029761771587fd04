"""``polyformer vision``: train, evaluate and run ViT image classifiers from the command line.

This module only parses options and prints; the work is in
:mod:`polyformer.apps.recipes.vision_classification` and :mod:`polyformer.apps.pipelines`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import (
    USER_ERRORS,
    apply_training_options,
    check_output_file,
    check_overrides,
    relaunch_with_nproc,
    run_training,
    training_options,
)

DEFAULT_CONFIGS = {"embedded": "fashion_mnist_embedded", "fashion-mnist": "fashion_mnist_full"}
FALLBACK_CONFIG = "image_folder"
FINETUNE_CONFIG = "image_folder_finetune"  # the default config with --init, whatever DATA is
SHIPPED_MODEL = "vit_fashion_mnist"
MODEL_HELP = (
    "Model directory, its model.safetensors, a training run directory (its best model) or a checkpoint; "
    f"`{SHIPPED_MODEL}` is the shipped Fashion-MNIST ViT."
)


def _require_model(model_dir: str | None, what: str = "model", shipped: str = SHIPPED_MODEL,
                   demo: str = "the shipped Fashion-MNIST demo model") -> str:  # fmt: skip
    if model_dir is None:
        raise click.UsageError(
            f"--model is required: give your trained {what} (a run directory or model directory), "
            f"or --model {shipped} for {demo}"
        )
    return model_dir


def _init_path(init: str) -> str:
    """The checkpoint --init names: a path that exists, or a shipped checkpoint's name."""
    from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS

    if init in SHIPPED_CHECKPOINTS:
        return str(SHIPPED_CHECKPOINTS[init])
    if not Path(init).expanduser().exists():
        raise click.BadParameter(f"{init} does not exist", param_hint="'--init'")
    return init


@click.group()
def vision() -> None:
    """ViT image classification: train, eval, predict."""


def _apply_options(recipe, data: str, options: dict[str, Any]):
    """Command-line options take precedence over the config and its key=value overrides."""
    recipe.train = apply_training_options(recipe.train, options)
    recipe.data.train = data
    if options["skip_bad"]:
        recipe.data.skip_bad = True
    for name in ("freeze_backbone_steps", "layer_decay"):
        if options[name] is not None:
            recipe.train = recipe.train.replace(**{name: options[name]})
    return recipe


@vision.command()
@click.argument("data")
@click.argument("overrides", nargs=-1)
@click.option("--preset", help="ViT preset, e.g. vit_nano_patch4_28 (see `polyformer info`).")
@click.option(
    "--init",
    help="Fine-tune from these weights: a polyformer model/run/checkpoint directory, a Hugging Face ViT "
    f"directory, a timm directory or weights file, or `{SHIPPED_MODEL}`. A new head is made when the classes "
    f"differ [default config: {FINETUNE_CONFIG}].",
)
@click.option(
    "--freeze-backbone-steps",
    type=click.IntRange(min=0),
    help="Train only the head for the first N steps (N >= all steps: a linear probe).",
)
@click.option(
    "--layer-decay",
    type=click.FloatRange(min=0, max=1, min_open=True),
    help="Layer-wise learning-rate decay as timm's --layer-decay: block i of L learns at lr * d^(L+1-i).",
)
@training_options
def train(data: str, overrides: tuple[str, ...], config_name: str | None, nproc: int, **options: Any) -> None:
    """Train a ViT on DATA: `embedded`, `fashion-mnist`, an image folder, an IDX folder or a CSV file.

    OVERRIDES are recipe config fields as key=value, e.g. `train.weight_decay=0.1 data.augment=trivialaugment`.
    """
    check_overrides(overrides)
    if options["init"] and options["preset"]:
        raise click.UsageError("give --preset (a new model) or --init (pretrained weights to fine-tune), not both")
    if options["init"]:
        options["init"] = _init_path(options["init"])
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.vision_classification import load_recipe, train_vision_classifier

    default = FINETUNE_CONFIG if options["init"] else DEFAULT_CONFIGS.get(data, FALLBACK_CONFIG)
    for key in ("preset", "init"):  # the [model] table is checked with them (init replaces the preset)
        if options[key]:
            overrides = (*overrides, f"model.{key}={json.dumps(str(options[key]))}")

    def work() -> None:
        recipe = _apply_options(load_recipe(config_name or default, overrides), data, options)
        train_vision_classifier(recipe, echo=click.echo)

    run_training(work)


@vision.command("eval")
@click.argument("data", default="embedded")
@click.option("--model", "model_dir", help=MODEL_HELP)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "all"]),
    help="test: the data's test split; val: the images the training run held out (its split.json); "
    "all: every image [default: test if DATA has one, else val].",
)
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]))
@click.option("--confusion-png", default="confusion_matrix.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images (counted) instead of stopping.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate(
    data: str,
    model_dir: str | None,
    split: str | None,
    batch_size: int,
    precision: str,
    confusion_png: str,
    skip_bad: bool,
    as_json: bool,
) -> None:
    """Accuracy, per-class accuracy and a confusion-matrix PNG of a model on DATA [default: embedded]."""
    from polyformer.apps.engine import run_of_model
    from polyformer.apps.pipelines import find_model
    from polyformer.apps.recipes.vision_classification import (
        evaluate_classifier,
        open_eval_split,
        plot_confusion_matrix,
        skipped_images,
    )
    from polyformer.vision.vit import ViT

    model_dir = _require_model(model_dir)
    check_output_file(confusion_png)
    try:
        path, note = find_model(model_dir)
        model = ViT.from_pretrained(path)
        chosen = open_eval_split(model, data, split, skip_bad, run_of_model(path))
        dataset = chosen.dataset
        report = evaluate_classifier(model, dataset, batch_size, precision)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    skipped = skipped_images(dataset)
    report["skipped"] = len(skipped)
    report["confusion_png"] = str(plot_confusion_matrix(report["confusion_matrix"], report["classes"], confusion_png))
    report["model"] = str(path)
    report["split"] = chosen.description
    for text in chosen.warnings:
        click.echo(f"warning: {text}", err=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(note)
    click.echo(chosen.description)
    click.echo(f"accuracy {report['accuracy']:.2%} on {report['images']} images; loss {report['loss']:.4f}")
    for name, accuracy in report["per_class_accuracy"].items():
        click.echo(f"  {name:<20} {accuracy:.2%}")
    if report["skipped"]:
        more = ", ..." if len(skipped) > 3 else ""
        click.echo(f"skipped {len(skipped)} unreadable images: {', '.join(skipped[:3])}{more}")
    click.echo(f"confusion matrix: {report['confusion_png']}")


@vision.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_dir", help=MODEL_HELP)
@click.option("--top-k", default=3, show_default=True, type=int)
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per image.")
def predict(images: tuple[str, ...], model_dir: str | None, top_k: int, batch_size: int, as_json: bool) -> None:
    """Top-k labels with probabilities for each IMAGE."""
    from polyformer.apps.pipelines import find_model, pipeline

    model_dir = _require_model(model_dir)
    try:
        path, note = find_model(model_dir)
        classify = pipeline("image-classification", model=path, top_k=top_k, batch_size=batch_size)
        results = classify(list(images))
    except (*USER_ERRORS, TypeError) as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(
            json.dumps([{"image": path, "predictions": found} for path, found in zip(images, results)], indent=2)
        )
        return
    click.echo(note)
    for path, found in zip(images, results):
        click.echo(f"{Path(path).name}: " + ", ".join(f"{p['label']} {p['score']:.1%}" for p in found))


DETECT_CONFIGS = {"shapes": "detr_shapes"}
DETECT_FALLBACK = "detection"
DETECT_FINETUNE = "detection_finetune"  # the default config with --init
SHIPPED_DETECTOR = "detr_shapes"
DETECTOR_HELP = (
    "DETR model directory (ours or a Hugging Face DetrForObjectDetection one), a training run directory (its "
    f"best model) or a checkpoint; `{SHIPPED_DETECTOR}` is the shipped shapes detector."
)


def _require_detector(model_dir: str | None) -> str:
    return _require_model(model_dir, "detector", SHIPPED_DETECTOR, "the shipped shapes detector")


@vision.command("detect-train")
@click.argument("data")
@click.argument("overrides", nargs=-1)
@click.option("--preset", help="DETR preset, e.g. detr_small_resnet18 (see `polyformer info`).")
@click.option(
    "--init",
    help="Fine-tune from a DETR directory: ours, a Hugging Face DetrForObjectDetection directory, a run, or "
    f"`{SHIPPED_DETECTOR}`; the class head is made anew when the classes differ [default config: {DETECT_FINETUNE}].",
)
@click.option(
    "--num-queries", type=click.IntRange(min=1), help="Object queries: at least the most objects in one image."
)
@click.option(
    "--freeze-backbone", is_flag=True, help="Train the transformer and heads only (for a pretrained backbone)."
)
@click.option("--focal", is_flag=True, help="Sigmoid focal class loss instead of cross-entropy (small data).")
@click.option(
    "--overfit-batch", is_flag=True, help="Train and validate on one batch: a working set-up fits it almost perfectly."
)
@training_options
def detect_train(data: str, overrides: tuple[str, ...], config_name: str | None, nproc: int, **options: Any) -> None:
    """Train a DETR detector on DATA: `shapes`, a COCO .json, a .csv (image,xmin,ymin,xmax,ymax,label) or a
    folder (COCO annotations.json, VOC .xml files or one .csv; train/ and test/ or val/ sub-folders are used).

    OVERRIDES are recipe config fields as key=value, e.g. `loss.no_object_weight=0.2 train.lr=1e-4`.
    """
    check_overrides(overrides)
    if options["init"] and options["preset"]:
        raise click.UsageError("give --preset (a new model) or --init (a detector to fine-tune), not both")
    if options["init"]:
        options["init"] = _init_path(options["init"])
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.vision_detection import load_detection_recipe, train_detector

    default = DETECT_FINETUNE if options["init"] else DETECT_CONFIGS.get(data, DETECT_FALLBACK)
    for key in ("preset", "init", "num_queries"):
        if options[key] is not None:
            overrides = (*overrides, f"model.{key}={json.dumps(options[key])}")
    if options["focal"]:
        overrides = (*overrides, "loss.focal=true")
    if options["overfit_batch"]:
        overrides = (*overrides, "data.overfit_batch=true")

    def work() -> None:
        recipe = load_detection_recipe(config_name or default, overrides)
        recipe.train = apply_training_options(recipe.train, options)
        recipe.data.train = data
        recipe.data.skip_bad = recipe.data.skip_bad or options["skip_bad"]
        recipe.model["freeze_backbone"] = options["freeze_backbone"]
        train_detector(recipe, echo=click.echo)

    run_training(work)


@vision.command("detect-eval")
@click.argument("data", default="shapes")
@click.option("--model", "model_dir", help=DETECTOR_HELP)
@click.option(
    "--split", default="test", show_default=True, type=click.Choice(["test", "train"]), help="Which split of DATA."
)
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]))
@click.option("--threshold", default=0.5, show_default=True, type=float, help="Score threshold of the drawn boxes.")
@click.option(
    "--png", default="detections.png", show_default=True, type=click.Path(dir_okay=False),
    help="Picture of the first images with predicted (coloured) and true (white) boxes.",
)  # fmt: skip
@click.option("--skip-bad", is_flag=True, help="Drop bad boxes and missing images (counted) instead of stopping.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def detect_eval(
    data: str, model_dir: str | None, split: str, batch_size: int, precision: str, threshold: float, png: str,
    skip_bad: bool, as_json: bool,
) -> None:  # fmt: skip
    """COCO mAP, mAP@0.5 and mAP@0.75 (torchmetrics) of a detector on DATA [default: shapes], with a PNG."""
    from polyformer.apps.pipelines import find_model
    from polyformer.apps.recipes.vision_detection import draw_examples, evaluate_detector
    from polyformer.vision.data import open_detection_data
    from polyformer.vision.detr import DETR

    model_dir = _require_detector(model_dir)
    check_output_file(png)
    try:
        path, note = find_model(model_dir, "object-detection")
        model = DETR.from_pretrained(path)
        annotations = open_detection_data(data, split, model.config.class_names, skip_bad)
        report = evaluate_detector(model, annotations, batch_size, precision)
        report["png"] = str(draw_examples(model, annotations, png, threshold))
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    report.update(model=str(path), data=f"{data} ({split})", skipped=annotations.skipped)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(note)
    click.echo(
        f"{report['images']} images of {data} ({split}): mAP {report['map']:.3f}, mAP@0.5 {report['map_50']:.3f}, "
        f"mAP@0.75 {report['map_75']:.3f}, recall@100 {report['mar_100']:.3f}; class error {report['class_error']:.1f}%"
    )
    for name, value in zip(report["classes"], report["map_per_class"]):
        click.echo(f"  {name:<20} AP {value:.3f}")
    if annotations.skipped:
        click.echo(f"skipped {annotations.skipped} bad annotations or images: {annotations.skipped_reasons[0]}")
    click.echo(f"picture: {report['png']}")


@vision.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_dir", help=DETECTOR_HELP)
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--out-dir", type=click.Path(file_okay=False), help="Also save each image with its boxes drawn here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per image.")
def detect(
    images: tuple[str, ...], model_dir: str | None, threshold: float, batch_size: int, out_dir: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Objects in each IMAGE: label, score and pixel box (xmin, ymin, xmax, ymax)."""
    from polyformer.apps.pipelines import find_model, pipeline

    model_dir = _require_detector(model_dir)
    if out_dir is not None and not Path(out_dir).is_dir():
        raise click.BadParameter(f"{out_dir} does not exist; create it first", param_hint="'--out-dir'")
    try:
        path, note = find_model(model_dir, "object-detection")
        detector = pipeline("object-detection", model=path, threshold=threshold, batch_size=batch_size)
        found = detector.detect(list(images))
    except (*USER_ERRORS, TypeError) as err:
        raise click.ClickException(str(err)) from err
    results = [
        [
            {"label": detector.labels[label], "score": round(score, 4), "box": [round(v, 1) for v in box]}
            for box, score, label in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist())
        ]
        for d in found
    ]
    if out_dir is not None:
        for image, detections in zip(images, found):
            detector.annotate(image, detections).save(Path(out_dir) / f"{Path(image).stem}_detections.png")
    if as_json:
        click.echo(json.dumps([{"image": p, "detections": r} for p, r in zip(images, results)], indent=2))
        return
    click.echo(note)
    for image, detections in zip(images, results):
        shown = ", ".join(f"{d['label']} {d['score']:.2f} at {d['box']}" for d in detections) or "nothing"
        click.echo(f"{Path(image).name}: {shown}")
