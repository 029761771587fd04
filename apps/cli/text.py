"""``polyformer text``: tokenizers and translation from the command line (the other text commands are to come).

This module only parses options and prints; the work is in
:mod:`polyformer.apps.recipes.text_translation`, :mod:`polyformer.text` and :mod:`polyformer.apps.pipelines`.
"""

from __future__ import annotations

import json
import sys
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

__all__ = ["text"]

TRANSLATION_CONFIG = "bible_en_es"
SHIPPED_TRANSLATOR = "translation_en_es"
MODEL_HELP = (
    "Translation model directory (model + tokenizer), a training run directory (its best model), "
    f"or `{SHIPPED_TRANSLATOR}`, the shipped English-to-Spanish model."
)


@click.group()
def text() -> None:
    """Text: tokenizers and translation."""


@text.group()
def tokenizer() -> None:
    """Train tokenizers (Hugging Face tokenizers)."""


@tokenizer.command("train")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(["wordpiece", "bpe", "unigram"]), default="unigram", show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=8), default=8000, show_default=True)
@click.option("--lowercase", is_flag=True, help="Lower-case the text first.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write.")
def train_tokenizer(files: tuple[str, ...], kind: str, vocab_size: int, lowercase: bool, out_dir: str) -> None:
    """Train a tokenizer on UTF-8 text FILES; writes tokenizer.json and tokenizer_config.json into --out."""
    from polyformer.text.tokenizer import TextTokenizer

    try:
        trained = TextTokenizer.train(list(files), kind=kind, vocab_size=vocab_size, lowercase=lowercase)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    trained.save(out_dir)
    specials = ", ".join(trained.specials.present())
    click.echo(f"{kind} tokenizer with {trained.vocab_size} tokens in {out_dir} (special tokens: {specials})")


@text.command("train-translation")
@click.argument("data", default="bible")
@click.argument("overrides", nargs=-1)
@click.option("--reverse", is_flag=True, help="Translate the other way (target -> source; Spanish -> English).")
@training_options
def train_translation_command(
    data: str, overrides: tuple[str, ...], config_name: str | None, nproc: int, reverse: bool, **options: Any
) -> None:
    """Train a translation model on DATA: `bible` (embedded English-Spanish) or a TSV / JSONL file of pairs.

    OVERRIDES are recipe config fields as key=value, e.g. `model.encoder_layers=4 tokenizer.vocab_size=8000`.
    The run's model/ and best_model/ hold the tokenizer too; the test pairs are scored with BLEU and chrF.
    """
    check_overrides(overrides)
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.text_translation import load_translation_recipe, train_translation

    extra = [f"data.train={json.dumps(data)}"] + (["data.reverse=true"] if reverse else [])
    if options["skip_bad"]:
        extra.append("data.skip_bad=true")

    def work() -> None:
        recipe = load_translation_recipe(config_name or TRANSLATION_CONFIG, [*overrides, *extra])
        recipe.train = apply_training_options(recipe.train, options)
        train_translation(recipe, echo=click.echo)

    run_training(work)


def _translator(model: str | None) -> str:
    if model is None:
        raise click.UsageError(
            f"--model is required: a translation model or run directory, or --model {SHIPPED_TRANSLATOR}"
        )
    return model


def _train_lm(data: str, overrides: tuple[str, ...], config: str, objective: str, nproc: int, options) -> None:
    check_overrides(overrides)
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.text_lm import load_lm_recipe, train_language_model

    extra = [f"data.train={json.dumps(data)}", f"data.objective={json.dumps(objective)}"]
    if options["skip_bad"]:
        extra.append("data.skip_bad=true")

    def work() -> None:
        recipe = load_lm_recipe(options.pop("config_name") or config, [*overrides, *extra])
        recipe.train = apply_training_options(recipe.train, options)
        train_language_model(recipe, echo=click.echo)

    run_training(work)


@text.command("pretrain-mlm")
@click.argument("data", default="bible-en")
@click.argument("overrides", nargs=-1)
@training_options
def pretrain_mlm(data: str, overrides: tuple[str, ...], nproc: int, **options: Any) -> None:
    """Masked-LM pretraining of a BERT on DATA: `bible-en`, `bible-es`, `shakespeare`, a text file or a folder."""
    _train_lm(data, overrides, "bible_mlm", "mlm", nproc, options)


@text.command("train-lm")
@click.argument("data", default="bible-en")
@click.argument("overrides", nargs=-1)
@training_options
def train_lm(data: str, overrides: tuple[str, ...], nproc: int, **options: Any) -> None:
    """Causal-LM training of a GPT on DATA: `bible-en`, `bible-es`, `shakespeare`, a text file or a folder."""
    _train_lm(data, overrides, "bible_lm", "lm", nproc, options)


@text.command()
@click.argument("data")
@click.argument("overrides", nargs=-1)
@click.option("--init", help="Start from this BERT directory (ours or Hugging Face's) [default: a mini BERT].")
@training_options
def finetune(data: str, overrides: tuple[str, ...], nproc: int, init: str | None, **options: Any) -> None:
    """Fine-tune a BERT classifier on DATA, a CSV (or .tsv) with `text` and `label` columns."""
    check_overrides(overrides)
    relaunch_with_nproc(nproc)
    from polyformer.apps.recipes.text_classification import load_classification_recipe, train_text_classifier

    extra = [f"data.train={json.dumps(data)}"] + ([f"model.init={json.dumps(init)}"] if init else [])
    if options["skip_bad"]:
        extra.append("data.skip_bad=true")

    def work() -> None:
        recipe = load_classification_recipe(options.pop("config_name") or "text_classification", [*overrides, *extra])
        recipe.train = apply_training_options(recipe.train, options)
        train_text_classifier(recipe, echo=click.echo)

    run_training(work)


@text.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--model", "model_dir", required=True, help="A text classifier (model or run directory).")
@click.option("--top-k", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per text.")
def classify(texts: tuple[str, ...], model_dir: str, top_k: int, as_json: bool) -> None:
    """Labels with probabilities for each of TEXTS."""
    from polyformer.apps.pipelines import pipeline

    try:
        results = pipeline("text-classification", model=model_dir, top_k=top_k)(list(texts))
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps([{"text": t, "labels": r} for t, r in zip(texts, results)], ensure_ascii=False))
        return
    for text_, found in zip(texts, results):
        click.echo(f"{text_[:60]}: " + ", ".join(f"{r['label']} {r['score']:.1%}" for r in found))


@text.command()
@click.argument("prompts", nargs=-1, required=True)
@click.option("--model", "model_dir", required=True, help="A GPT model or run directory (ours or Hugging Face GPT-2).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--sample", is_flag=True, help="Sample (temperature, top-k, top-p) instead of greedy decoding.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=None)
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=None)
@click.option("--beams", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def generate(prompts: tuple[str, ...], model_dir: str, seed: int, **options: Any) -> None:
    """Continue each of PROMPTS with a causal language model."""
    from polyformer.apps.pipelines import pipeline

    try:
        torch_seed(seed)
        complete = pipeline("text-generation", model=model_dir)
        for result in complete(list(prompts), **options):
            click.echo(result)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


@text.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "model_dir", help=MODEL_HELP)
@click.option("--file", "input_file", type=click.Path(exists=True, dir_okay=False), help="Translate each line of FILE.")
@click.option("--beams", type=click.IntRange(min=1), default=4, show_default=True, help="Beam width (1 = greedy).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one {source, translation} object per text.")
def translate(
    texts: tuple[str, ...], model_dir: str | None, input_file: str | None, beams: int, batch_size: int, as_json: bool
) -> None:
    """Translate TEXTS, the lines of --file, or else the lines of standard input."""
    from polyformer.apps.pipelines import pipeline

    model_dir = _translator(model_dir)
    if texts and input_file:
        raise click.UsageError("give TEXTS or --file, not both")
    if input_file:
        sources = [line.strip() for line in Path(input_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    elif texts:
        sources = list(texts)
    else:
        sources = [line.strip() for line in sys.stdin if line.strip()]
    if not sources:
        raise click.UsageError("nothing to translate: no TEXTS, and the input has no non-blank line")
    try:
        translator = pipeline("translation", model=model_dir, num_beams=beams, batch_size=batch_size)
        results = translator(sources)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps([{"source": s, "translation": t} for s, t in zip(sources, results)], ensure_ascii=False))
        return
    for result in results:
        click.echo(result)


def _is_classifier(model: str) -> bool:
    from polyformer.apps.pipelines import ModelFamilyError, resolve_model_dir
    from polyformer.apps.recipes.text_classification import LABELS_FILE

    try:
        return (resolve_model_dir(model, "text-classification") / LABELS_FILE).is_file()
    except (FileNotFoundError, ModelFamilyError):  # a translation model, or nothing: `text eval` says which
        return False


def _evaluate_classifier(data: str, model: str, limit: int, as_json: bool) -> None:
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    from polyformer.apps.pipelines import pipeline
    from polyformer.text.data import read_labeled

    try:
        classify = pipeline("text-classification", model=model)
        rows = read_labeled(data, min_classes=1)
        texts, labels = rows.texts[: limit or None], rows.labels[: limit or None]
        unseen = sorted(set(labels) - set(classify.labels))
        if unseen:
            raise ValueError(f"{data} has labels the model does not know: {unseen}; its labels: {classify.labels}")
        predicted = classify.probabilities(texts).argmax(-1)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    target = torch.tensor([classify.labels.index(label) for label in labels])
    k = len(classify.labels)
    scores = {
        "accuracy": round(float(multiclass_accuracy(predicted, target, k, average="micro")), 4),
        "macro_f1": round(float(multiclass_f1_score(predicted, target, k, average="macro")), 4),
        "texts": len(texts),
    }
    if as_json:
        click.echo(json.dumps(scores))
        return
    click.echo(f"{data}: accuracy {scores['accuracy']:.2%}, macro-F1 {scores['macro_f1']:.4f} on {len(texts)} texts")


@text.command("eval")
@click.argument("data", default="bible")
@click.option("--model", "model_dir", help=MODEL_HELP)
@click.option("--beams", type=click.IntRange(min=1), default=4, show_default=True, help="Beam width (1 = greedy).")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="Score only the first N pairs (0 = all).")
@click.option("--reverse", is_flag=True, help="Score the target -> source direction.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def evaluate(data: str, model_dir: str | None, beams: int, limit: int, reverse: bool, as_json: bool) -> None:
    """BLEU and chrF (sacreBLEU) of a translation model on DATA (`bible`: its held-out test books, or a pairs file);
    accuracy and macro-F1 (torchmetrics) of a text classifier on a `text,label` CSV."""
    from polyformer.apps.pipelines import pipeline
    from polyformer.apps.recipes.text_translation import score_translations
    from polyformer.text.bible import load_bible_pairs
    from polyformer.text.data import read_pairs

    model_dir = _translator(model_dir)
    if _is_classifier(model_dir):
        _evaluate_classifier(data, model_dir, limit, as_json)
        return
    try:
        if data == "bible":
            verses = load_bible_pairs("test")
            sources, references = [v.en for v in verses], [v.es for v in verses]
            where = "the embedded Bible's test books"
        else:
            pairs = read_pairs(data)
            sources, references, where = pairs.sources, pairs.targets, data
        if reverse:
            sources, references = references, sources
        if limit:
            sources, references = sources[:limit], references[:limit]
        translator = pipeline("translation", model=model_dir, num_beams=beams)
        scores = score_translations(translator(sources), references)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps({**scores, "data": where, "beams": beams}))
        return
    click.echo(f"{where}: BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} on {scores['sentences']} sentences "
               f"(beam {beams})")  # fmt: skip
