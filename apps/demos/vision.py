"""The vision part of ``polyformer demo``: the shipped ViT classifies embedded Fashion-MNIST test images, and
the shipped DETR finds the shapes in held-out images of the embedded shapes set."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, pipeline
from polyformer.apps.recipes.vision_classification import evaluate_classifier, open_eval_dataset
from polyformer.apps.recipes.vision_detection import draw_examples, evaluate_detector
from polyformer.vision.data import load_embedded_fashion_mnist, open_detection_data

__all__ = ["run", "run_detection_demo", "run_vision_demo"]

SHOWN_IMAGES = (0, 201, 402, 603, 804, 1005, 1206, 1407)  # a spread of embedded test images


def run_vision_demo(echo: Callable[[str], None]) -> float:
    """Classify a few embedded test images with the shipped ViT and print its embedded test accuracy.

    Args:
        echo: where lines go (e.g. ``click.echo``).

    Returns:
        The test accuracy on the embedded Fashion-MNIST subset.
    """
    start = time.perf_counter()
    directory = SHIPPED_CHECKPOINTS["vit_fashion_mnist"]
    classify = pipeline("image-classification", model=directory, top_k=2)
    size_kb = sum(p.stat().st_size for p in directory.iterdir()) / 1024
    echo(f"[vision] shipped ViT {directory.name} ({size_kb:.0f} KB) on embedded Fashion-MNIST test images")
    raw = load_embedded_fashion_mnist("test")
    images = [raw.load(i) for i in SHOWN_IMAGES]
    for index, found in zip(SHOWN_IMAGES, classify(images)):
        truth = raw.classes[raw.targets[index]]
        best, second = found
        mark = "ok" if best["label"] == truth else "WRONG"
        echo(
            f"  #{index:<5} {truth:<12} -> {best['label']:<12} {best['score']:6.1%}  (then {second['label']} "
            f"{second['score']:.1%}) {mark}"
        )
    with torch.no_grad():
        report = evaluate_classifier(classify.model, open_eval_dataset(classify.model, "embedded", "test"))
    echo(
        f"  test accuracy on all {report['images']} embedded test images: {report['accuracy']:.2%} "
        f"({time.perf_counter() - start:.1f}s)"
    )
    return report["accuracy"]


DETECTION_PNG = Path("runs") / "demo" / "detections.png"


def run_detection_demo(echo: Callable[[str], None], png: Path = DETECTION_PNG) -> float:
    """Detect the shapes in a few held-out images with the shipped DETR, save them drawn as one PNG, and
    print mAP@0.5 over the whole test split.

    Returns:
        The test mAP@0.5.
    """
    start = time.perf_counter()
    directory = SHIPPED_CHECKPOINTS["detr_shapes"]
    detector = pipeline("object-detection", model=directory, threshold=0.5)
    size_kb = sum(p.stat().st_size for p in directory.iterdir()) / 1024
    echo(f"[vision] shipped DETR {directory.name} ({size_kb:.0f} KB) on held-out images of the embedded shapes set")
    test = open_detection_data("shapes", "test")
    names = test.class_names
    shown = test.samples[:4]
    for sample, found in zip(shown, detector([str(s.image) for s in shown])):
        truth = ", ".join(sorted(names[i] for i in sample.labels.tolist()))
        seen = ", ".join(f"{d['label']} {d['score']:.2f}" for d in found) or "nothing"
        echo(f"  {sample.image.name}: true {truth}; found {seen}")
    png.parent.mkdir(parents=True, exist_ok=True)
    draw_examples(detector.model, test, png)
    with torch.no_grad():
        report = evaluate_detector(detector.model, test)
    echo(f"  drawn: {png} (predicted boxes in colour, true boxes in white)")
    echo(
        f"  mAP@0.5 on all {report['images']} test images: {report['map_50']:.3f} (mAP {report['map']:.3f}, "
        f"mAP@0.75 {report['map_75']:.3f}) ({time.perf_counter() - start:.1f}s)"
    )
    return report["map_50"]


def run(echo: Callable[[str], None]) -> None:
    """The demo as ``polyformer demo`` runs it."""
    run_vision_demo(echo)
    run_detection_demo(echo)
