"""The bio part of ``polyformer demo``: the shipped splice-junction classifier on held-out sequences."""

from __future__ import annotations

import time
from collections.abc import Callable

from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, pipeline
from polyformer.apps.recipes.bio_finetune import describe_metrics, evaluate_dna_classifier
from polyformer.bio.data import SPLICE_TEST_PATH, read_labeled_csv

__all__ = ["run", "run_bio_demo"]

SHOWN = (0, 1, 2, 3, 4, 5)  # the first held-out test sequences
NAMES = {"EI": "donor (exon|intron)", "IE": "acceptor (intron|exon)", "N": "neither"}


def run_bio_demo(echo: Callable[[str], None]) -> float:
    """Classify a few held-out splice sequences with the shipped classifier and print its test accuracy.

    Returns:
        The accuracy on the whole shipped test split.
    """
    start = time.perf_counter()
    directory = SHIPPED_CHECKPOINTS["dnabert_splice"]
    classify = pipeline("dna-classification", model=directory)
    size_mb = sum(p.stat().st_size for p in directory.iterdir()) / 2**20
    echo(f"[bio] shipped DNABERT splice-junction classifier {directory.name} ({size_mb:.1f} MB; fine-tuned from "
         "dnabert_ct_3mer, pretrained on the C. trachomatis genome) on held-out primate sequences")  # fmt: skip
    test = read_labeled_csv(SPLICE_TEST_PATH)
    for index, found in zip(SHOWN, classify([test.sequences[i] for i in SHOWN])):
        truth = test.labels[index]
        mark = "ok" if found["label"] == truth else "WRONG"
        echo(f"  {test.sequences[index][20:40]}... {NAMES[truth]:<22} -> {NAMES[found['label']]:<22} "
             f"{found['score']:6.1%} {mark}")  # fmt: skip
    metrics = evaluate_dna_classifier(classify.bundle, test)
    echo(f"  all {metrics['count']} test sequences: {describe_metrics(metrics)} ({time.perf_counter() - start:.1f}s)")
    return metrics["accuracy"]


def run(echo: Callable[[str], None]) -> None:
    run_bio_demo(echo)
