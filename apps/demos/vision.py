"""The vision part of ``polyformer demo``: the shipped ViT classifies embedded Fashion-MNIST test images."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, pipeline
from polyformer.apps.recipes.vision_classification import evaluate_classifier, open_eval_dataset
from polyformer.vision.data import load_embedded_fashion_mnist

__all__ = ["run", "run_vision_demo"]

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


def run(echo: Callable[[str], None]) -> None:
    """The demo as ``polyformer demo`` runs it."""
    run_vision_demo(echo)
