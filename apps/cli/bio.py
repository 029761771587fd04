"""``polyformer bio``: pretrain, fine-tune, evaluate and run DNABERT-style DNA models from the command line.

This module only parses options and prints; the work is in :mod:`polyformer.apps.recipes.bio_pretrain`,
:mod:`polyformer.apps.recipes.bio_finetune` and :mod:`polyformer.apps.pipelines.bio`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import (
    USER_ERRORS,
    apply_training_options,
    check_overrides,
    relaunch_with_nproc,
    run_training,
    training_options,
)

SHIPPED_CLASSIFIER = "dnabert_splice"
MODEL_HELP = (
    "A DNA classifier: model directory, training run directory (its best model), Hugging Face DNABERT "
    f"directory, or a shipped model name [default: {SHIPPED_CLASSIFIER}, the shipped splice-junction classifier]."
)


@click.group()
def bio() -> None:
    """DNABERT-style DNA models: pretrain, finetune, eval, predict."""


def _split_arguments(arguments: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Inputs and ``key=value`` overrides, in the order given (an override holds '=', a path or name does not)."""
    overrides = [a for a in arguments if "=" in a]
    return [a for a in arguments if "=" not in a], overrides


@bio.command()
@click.argument("arguments", nargs=-1)
@training_options
def pretrain(arguments: tuple[str, ...], nproc: int, **options: Any) -> None:
    """Masked-LM pretraining on FASTA / FASTQ / GenBank files (gzipped or not) [default: `genome`, the
    shipped C. trachomatis genome]; `key=value` overrides may follow, e.g. data.window=256."""
    sources, overrides = _split_arguments(arguments)
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.bio_pretrain import load_pretrain_recipe, pretrain_dna

    extra = [f"data.sources={json.dumps(sources)}"] if sources else []
    if options["skip_bad"]:
        extra.append("data.skip_bad=true")

    def work() -> None:
        recipe = load_pretrain_recipe(options.pop("config_name") or "dnabert_genome", [*overrides, *extra])
        recipe.train = apply_training_options(recipe.train, options)
        pretrain_dna(recipe, echo=click.echo)

    run_training(work)


@bio.command()
@click.argument("data")
@click.argument("overrides", nargs=-1)
@click.option("--init", help="Start from this pretrained DNA encoder (ours or a Hugging Face DNABERT directory).")
@click.option("--test", "test_csv", help="Test CSV evaluated with the best model at the end.")
@training_options
def finetune(data: str, overrides: tuple[str, ...], nproc: int, init: str | None, test_csv: str | None,
             **options: Any) -> None:  # fmt: skip
    """Fine-tune a DNA classifier on DATA, a `sequence,label` CSV (or .tsv), or `splice` (the shipped set)."""
    check_overrides(overrides)
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.bio_finetune import finetune_dna_classifier, load_finetune_recipe

    extra = [f"data.train={json.dumps(data)}"]
    extra += [f"model.init={json.dumps(init)}"] if init else []
    extra += [f"data.test={json.dumps(test_csv)}"] if test_csv else []
    if options["skip_bad"]:
        extra.append("data.skip_bad=true")

    def work() -> None:
        recipe = load_finetune_recipe(options.pop("config_name") or "dnabert_splice", [*overrides, *extra])
        recipe.train = apply_training_options(recipe.train, options)
        finetune_dna_classifier(recipe, echo=click.echo)

    run_training(work)


def _load_classifier(model: str | None):
    from polyformer.apps.pipelines import find_model
    from polyformer.bio.dnabert import load_dnabert

    directory, note = find_model(model or SHIPPED_CLASSIFIER, "dna-classification")
    return load_dnabert(directory, task="sequence_classification"), note


@bio.command("eval")
@click.argument("data")
@click.option("--model", "model_dir", help=MODEL_HELP)
@click.option("--rc-average", is_flag=True, help="Average both strands' probabilities (strand-symmetric labels).")
@click.option("--skip-bad", is_flag=True, help="Skip rows with bad bases or no label (counted) instead of stopping.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate(data: str, model_dir: str | None, rc_average: bool, skip_bad: bool, as_json: bool) -> None:
    """Accuracy, macro F1, MCC and AUROC of a classifier on DATA, a `sequence,label` CSV, or `splice` (the
    shipped test split)."""
    from polyformer.apps.recipes.bio_finetune import describe_metrics, evaluate_dna_classifier, read_dna_rows

    try:
        bundle, note = _load_classifier(model_dir)
        rows = read_dna_rows(data, skip_bad, test=True)
        metrics = evaluate_dna_classifier(bundle, rows, rc_average)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps({**metrics, "skipped": len(rows.skipped)}))
        return
    click.echo(note, err=True)
    skipped = f"; {len(rows.skipped)} bad rows skipped" if rows.skipped else ""
    click.echo(f"{metrics['count']} sequences{skipped}: {describe_metrics(metrics)}")


def _inputs(items: tuple[str, ...], skip_bad: bool) -> tuple[list[str], list[str]]:
    """(names, sequences): every record of each sequence file, and each other argument as a sequence."""
    from polyformer.bio.data import read_sequences

    names, sequences = [], []
    for item in items:
        if Path(item).is_file():
            records = read_sequences(item, skip_bad)
            names += records.ids
            sequences += records.sequences
            for message in records.skipped:
                click.echo(f"skipped: {message}", err=True)
        else:
            names.append(item if len(item) <= 20 else f"{item[:17]}...")
            sequences.append(item)
    return names, sequences


@bio.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model_dir", help=MODEL_HELP)
@click.option("--window", type=click.IntRange(min=8), help="Score windows of this many bases (long records).")
@click.option("--overlap", type=click.IntRange(min=0), default=0, show_default=True, help="Bases shared by windows.")
@click.option("--rc-average", is_flag=True, help="Average both strands' probabilities (strand-symmetric labels).")
@click.option("--skip-bad", is_flag=True, help="Skip records with invalid characters (counted) instead of stopping.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per sequence.")
def predict(inputs: tuple[str, ...], model_dir: str | None, window: int | None, overlap: int, rc_average: bool,
            skip_bad: bool, as_json: bool) -> None:  # fmt: skip
    """Classify each record of FASTA / FASTQ / GenBank files, or DNA sequences given as arguments."""
    from polyformer.apps.pipelines.bio import DnaClassificationPipeline

    try:
        bundle, note = _load_classifier(model_dir)
        names, sequences = _inputs(inputs, skip_bad)
        results = DnaClassificationPipeline(bundle, window, overlap, rc_average)(sequences)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    click.echo(note, err=True)
    if as_json:
        click.echo(json.dumps([{"name": name, **result} for name, result in zip(names, results)]))
        return
    for name, result in zip(names, results):
        others = ", ".join(f"{label} {p:.1%}" for label, p in result["scores"].items())
        click.echo(f"{name}: {result['label']} ({others})")
        for part in result.get("windows", []) if len(result.get("windows", [])) > 1 else []:
            click.echo(f"  {part['start'] + 1}-{part['end']}: {part['label']} {part['score']:.1%}")
