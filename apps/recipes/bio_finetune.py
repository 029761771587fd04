"""DNA sequence classification, explicitly: read ``sequence,label`` CSVs, start from a pretrained DNA
encoder (or a preset), fine-tune on the engine, test the best model, save it with its tokenizer and
class names.

``[model]`` takes ``init`` (a DNA model directory, ours or a Hugging Face DNABERT, a training run, or
a shipped model such as ``dnabert_ct_3mer``: its encoder loads,
the classifier is new) or ``preset`` (a ``dnabert*`` preset trained from scratch with the
``[tokenizer]`` settings), plus :class:`~polyformer.core.EncoderConfig` fields such as ``dropout`` or
``pool`` (``cls`` or ``mean``). ``data.train = "splice"`` is the shipped splice-junction set (its test
split becomes ``data.test``). Validation is ``data.eval`` or a seeded ``val_fraction`` of the training
rows (repeated sequences held out together; the split is saved in the run as ``split.json``).
``data.label_fraction`` trains on a seeded, stratified share of the rest (how much labelled data does
pretraining save?). After training, the best model is tested on ``data.test``: accuracy, macro F1,
MCC and AUROC go to ``test_metrics.json`` in the run directory.

Both strands (``data.rc_prob``, ``data.rc_average``) suit labels that hold on either strand (a
binding site, a species); they are off by default because many labels do not: a splice donor read
on the other strand is no donor, so the splice recipe keeps them off.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polyformer.apps.engine import (
    SPLIT_FILE,
    ClassificationTask,
    HeldOutSplit,
    TrainingConfig,
    TrainResult,
    init_distributed,
    seed_everything,
    sequence_classifier_from_encoder,
    train,
)
from polyformer.apps.pipelines import find_model
from polyformer.apps.recipes.bio_common import (
    DnaBatches,
    DnaTokenizerSettings,
    RandomStrand,
    classifier_metrics,
    dna_tokenizer_files,
    run_dna_tokenizer,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.bio.data import SPLICE_TEST_PATH, SPLICE_TRAIN_PATH, LabeledSequences, read_labeled_csv
from polyformer.bio.dnabert import DnaModel, classify_sequences, load_dnabert
from polyformer.bio.dnabert.pretrained import LABELS_FILE, save_dna_files
from polyformer.core import EncoderForSequenceClassification, create_model

__all__ = ["DnaClassificationData", "DnaFinetuneRecipe", "describe_metrics", "evaluate_dna_classifier",
           "finetune_dna_classifier", "load_finetune_recipe", "read_dna_rows"]  # fmt: skip

EMBEDDED_SPLICE = "splice"
TEST_METRICS_FILE = "test_metrics.json"


@dataclass
class DnaClassificationData:
    """Where the labelled sequences come from and how they are used."""

    train: str = EMBEDDED_SPLICE  # a sequence,label CSV (or .tsv, gzipped or not), or "splice" (shipped)
    eval: str = ""  # validation CSV; "" = a seeded val_fraction of the training rows
    test: str = ""  # test CSV, evaluated once with the best model; "" = the shipped test split for "splice"
    val_fraction: float = 0.1  # share of the training rows held out when there is no data.eval
    label_fraction: float = 1.0  # train on this seeded, stratified share of the training rows
    rc_prob: float = 0.0  # chance of training on a sequence's reverse complement (strand-symmetric labels only)
    rc_average: bool = False  # test on both strands, averaging the probabilities (strand-symmetric labels only)
    skip_bad: bool = False  # skip rows with bad bases or no label (counted) instead of stopping

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0 or not 0.0 < self.label_fraction <= 1.0:
            raise ValueError("data.val_fraction must be in (0, 1) and data.label_fraction in (0, 1]")
        if not 0.0 <= self.rc_prob <= 1.0:
            raise ValueError("data.rc_prob must be in [0, 1]")


@dataclass
class DnaFinetuneRecipe:
    name: str
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "dnabert_mini"})
    tokenizer: DnaTokenizerSettings = field(default_factory=DnaTokenizerSettings)
    data: DnaClassificationData = field(default_factory=DnaClassificationData)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_finetune_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> DnaFinetuneRecipe:
    """Read a DNA classification recipe config with ``key=value`` overrides (see :func:`load_recipe_file`)."""
    derived = {name: "the tokenizer or the data" for name in ("vocab_size", "num_labels", "pad_id")}
    return load_recipe_file(DnaFinetuneRecipe, name_or_path, overrides, derived=derived)


def read_dna_rows(source: str, skip_bad: bool = False, test: bool = False) -> LabeledSequences:
    """A ``sequence,label`` file, or the shipped splice-junction split for ``"splice"``."""
    if source == EMBEDDED_SPLICE:
        return read_labeled_csv(SPLICE_TEST_PATH if test else SPLICE_TRAIN_PATH)
    return read_labeled_csv(source, skip_bad)


def _stratified(rows: LabeledSequences, fraction: float, seed: int) -> list[int]:
    """Sorted indices of a seeded ``fraction`` of each class (at least one row each)."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for name in rows.classes:
        members = [i for i, label in enumerate(rows.labels) if label == name]
        rng.shuffle(members)
        chosen += members[: max(1, round(fraction * len(members)))]
    return sorted(chosen)


def _subset(rows: LabeledSequences, indices: list[int]) -> LabeledSequences:
    return LabeledSequences([rows.sequences[i] for i in indices], [rows.labels[i] for i in indices])


def _sequence_key(sequence: str) -> str:
    """A row's key in the held-out split: its sequence's digest (repeated sequences are held out together)."""
    return hashlib.sha1(sequence.encode("ascii")).hexdigest()[:16]


def _splits(
    data: DnaClassificationData, seed: int
) -> tuple[LabeledSequences, LabeledSequences, str, HeldOutSplit | None]:
    """Training rows, validation rows, a line saying where they come from, and the held-out split (if made)."""
    rows = read_dna_rows(data.train, data.skip_bad)
    where = "the shipped splice-junction set" if data.train == EMBEDDED_SPLICE else data.train
    skipped = f" ({len(rows.skipped)} bad rows skipped)" if rows.skipped else ""
    split = None
    if data.eval:
        train_rows, eval_rows = rows, read_dna_rows(data.eval, data.skip_bad)
        where = f"{where}{skipped}; validation {data.eval}"
    else:
        keys = [_sequence_key(s) for s in rows.sequences]
        split = HeldOutSplit.make(keys, data.val_fraction, seed, where)
        kept, held, _ = split.resolve(keys)
        train_rows, eval_rows = _subset(rows, kept), _subset(rows, held)
        where = f"{where}{skipped} ({data.val_fraction:.0%} held out, seed {seed}, saved in {SPLIT_FILE})"
    if data.label_fraction < 1.0:
        train_rows = _subset(train_rows, _stratified(train_rows, data.label_fraction, seed + 1))
        where += f"; training on {data.label_fraction:.0%} of the labels"
    return train_rows, eval_rows, where, split


def _model(recipe: DnaFinetuneRecipe, sequences: list[str], classes: list[str]):
    """The classifier, its tokenizer and the summary lines saying where they come from."""
    fields = {k: v for k, v in recipe.model.items() if k not in ("init", "preset", "k")}
    if "init" in recipe.model:
        directory, _ = find_model(recipe.model["init"], "dna-embedding")  # a path, a run or a shipped name
        bundle = load_dnabert(directory, task="base")
        source = f"DNA encoder {directory}"
        model, lines = sequence_classifier_from_encoder(bundle.encoder, classes, source, **fields)
        return model, bundle.tokenizer, [f"tokenizer: the init model's ({bundle.tokenizer.vocab_size} tokens)", *lines]
    tokenizer, origin = run_dna_tokenizer(recipe.tokenizer, recipe.train.resume, sequences)
    preset = recipe.model.get("preset", "dnabert_mini")
    base = create_model(preset, **{**fields, "vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id})
    model = EncoderForSequenceClassification(base.config.replace(num_labels=len(classes)))
    return model, tokenizer, [f"tokenizer: {origin}", f"init: {preset}, random initialisation"]


def evaluate_dna_classifier(
    bundle: DnaModel, rows: LabeledSequences, rc_average: bool = False, batch_size: int = 128
) -> dict[str, Any]:
    """Accuracy, macro F1, MCC and AUROC of a classifier on labelled rows (and the majority-class accuracy).

    Raises:
        ValueError: a label the classifier does not know.
    """
    labels = bundle.labels or []
    unknown = sorted(set(rows.labels) - set(labels))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classifier's classes {labels}")
    index = {name: i for i, name in enumerate(labels)}
    probabilities = classify_sequences(bundle, rows.sequences, batch_size=batch_size, rc=rc_average)
    targets = torch.tensor([index[label] for label in rows.labels])
    majority = max(rows.labels.count(name) for name in set(rows.labels)) / len(rows.labels)
    return {**classifier_metrics(probabilities, targets), "majority": majority, "count": len(rows.labels),
            "rc_average": rc_average}  # fmt: skip


def describe_metrics(metrics: dict[str, Any]) -> str:
    """One line: accuracy, F1, MCC, AUROC and the majority-class accuracy."""
    return (f"accuracy {metrics['accuracy']:.2%}, F1 {metrics['f1']:.3f}, MCC {metrics['mcc']:.3f}, "
            f"AUROC {metrics['auroc']:.3f} (majority class {metrics['majority']:.2%})")  # fmt: skip


def _test(recipe: DnaFinetuneRecipe, directory: Path, run_dir: Path, echo: Callable[[str], None]) -> None:
    source = recipe.data.test or (EMBEDDED_SPLICE if recipe.data.train == EMBEDDED_SPLICE else "")
    if not source:
        return
    rows = read_dna_rows(source, recipe.data.skip_bad, test=True)
    metrics = evaluate_dna_classifier(load_dnabert(directory), rows, recipe.data.rc_average)
    (run_dir / TEST_METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    strands = "both strands averaged" if recipe.data.rc_average else "forward strand"
    echo(f"test ({source}, {metrics['count']} sequences, {strands}): {describe_metrics(metrics)}")


def finetune_dna_classifier(recipe: DnaFinetuneRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune (or train) the classifier on the engine; the model directories get the tokenizer and labels.

    Raises:
        ValueError: bad data, or validation labels that training never saw.
    """
    context = init_distributed()
    start = time.perf_counter()
    train_rows, eval_rows, where, split = _splits(recipe.data, recipe.train.seed)
    classes = train_rows.classes
    unseen = sorted(set(eval_rows.labels) - set(classes))
    if unseen:
        raise ValueError(f"validation labels never seen in training: {unseen}; training labels: {classes}")
    seed_everything(recipe.train.seed)
    try:
        model, tokenizer, lines = _model(recipe, train_rows.sequences, classes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    index = {name: i for i, name in enumerate(classes)}
    train_items = [(s, index[label]) for s, label in zip(train_rows.sequences, train_rows.labels)]
    eval_items = [(s, index[label]) for s, label in zip(eval_rows.sequences, eval_rows.labels)]
    majority = max(eval_rows.labels.count(name) for name in classes) / len(eval_rows.labels)
    parameters = sum(p.numel() for p in model.parameters())
    summary = [
        f"data: {where}: {len(train_items)} training / {len(eval_items)} validation sequences; {len(classes)} "
        f"classes ({', '.join(classes[:8])}); majority class {majority:.1%} of validation; "
        f"reverse complement with p={recipe.data.rc_prob}",
        *lines,
        f"model: DNA classifier, {model.config.num_layers} layers x {model.config.d_model}, "
        f"{parameters / 1e6:.2f}M parameters",
    ]
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n", LABELS_FILE: json.dumps(classes) + "\n",
             **dna_tokenizer_files(tokenizer), **({SPLIT_FILE: split.to_json()} if split else {})}  # fmt: skip
    result = train(
        model, ClassificationTask(len(classes), scores=True), RandomStrand(train_items, recipe.data.rc_prob),
        recipe.train, eval_data=eval_items, collate_fn=DnaBatches(tokenizer, model.config.max_tokens), echo=echo,
        run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:
        for directory in (result.model_dir, result.best_model_dir):
            if directory is not None:
                save_dna_files(directory, tokenizer, classes)
        accuracy = result.metrics.get("accuracy")
        shown = f", validation accuracy {accuracy:.2%} (majority class {majority:.2%})" if accuracy is not None else ""
        echo(f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps{shown}; model in "
             f"{result.best_model_dir or result.model_dir}")  # fmt: skip
        _test(recipe, result.best_model_dir or result.model_dir, result.out_dir, echo)
    return result
