"""Text classification, explicitly: read a ``text,label`` CSV, start BERT from pretrained weights (or a preset),
fine-tune on the engine, save the model with its tokenizer and label names.

``[model]`` takes ``init`` (a BERT directory, ours or Hugging Face's, e.g. all-MiniLM-L6-v2: its
encoder loads, the classifier is new) or ``preset`` (a ``bert_*`` preset trained from scratch with a
WordPiece tokenizer trained on the texts), plus :class:`~polyformer.core.EncoderConfig` fields such
as ``dropout``. Validation is ``data.eval`` or a seeded ``val_fraction`` of the training rows; a
validation label never seen in training is an error before training starts.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.apps.engine import (
    ClassificationTask,
    TrainingConfig,
    TrainResult,
    init_distributed,
    seed_everything,
    sequence_classifier_from_encoder,
    train,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.text_common import run_tokenizer
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.core import EncoderForSequenceClassification, create_model
from polyformer.text.bert import load_bert
from polyformer.text.data import LabeledTexts, read_labeled
from polyformer.text.tokenizer import TextTokenizer, pad_token_ids

__all__ = ["LABELS_FILE", "ClassificationDataSettings", "TextClassificationRecipe", "encode_texts",
           "load_classification_recipe", "read_label_names", "train_text_classifier"]  # fmt: skip

LABELS_FILE = "labels.json"  # the class names, in the order of the classifier's outputs


@dataclass
class ClassificationDataSettings:
    """Where the labelled texts come from."""

    train: str = ""  # a CSV (or .tsv) with a header naming the 'text' and 'label' columns
    eval: str = ""  # validation CSV; "" = a seeded val_fraction of the training rows
    val_fraction: float = 0.1  # share of the training rows held out when there is no data.eval
    max_tokens: int = 128  # truncate texts to this many tokens
    vocab_size: int = 8000  # WordPiece vocabulary trained on the texts (model.preset only)
    skip_bad: bool = False  # skip malformed rows (counted) instead of stopping

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0 or self.max_tokens < 4:
            raise ValueError("data.val_fraction must be in (0, 1) and data.max_tokens at least 4")


@dataclass
class TextClassificationRecipe:
    name: str
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "bert_mini"})
    data: ClassificationDataSettings = field(default_factory=ClassificationDataSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_classification_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> TextClassificationRecipe:
    """Read a text-classification recipe config with ``key=value`` overrides (see :func:`load_recipe_file`)."""
    derived = {name: "the tokenizer or the data" for name in ("vocab_size", "num_labels", "pad_id", "mask_id")}
    return load_recipe_file(TextClassificationRecipe, name_or_path, overrides, derived=derived)


def read_label_names(directory: str | Path) -> list[str]:
    """The class names saved with a classifier (``labels.json``)."""
    path = Path(directory) / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a text classifier directory")
    return json.loads(path.read_text(encoding="utf-8"))


class _Encoded(Dataset):
    """Texts tokenized once: item ``i`` is ``(ids (T,), class index)``."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer: TextTokenizer, max_tokens: int):
        tokenizer.tokenizer.enable_truncation(max_tokens)
        try:
            encodings = tokenizer.tokenizer.encode_batch(list(texts))
        finally:
            tokenizer.tokenizer.no_truncation()
        self.items = [(torch.tensor(e.ids), int(label)) for e, label in zip(encodings, labels)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def encode_texts(batch: Sequence[tuple[Tensor, int]], pad_id: int) -> tuple[dict[str, Tensor], Tensor]:
    """Collate ``(ids, label)`` items: ``({"input_ids", "attention_mask"}, labels)``, right-padded."""
    ids, mask = pad_token_ids([item[0] for item in batch], pad_id)
    return {"input_ids": ids, "attention_mask": mask}, torch.tensor([item[1] for item in batch])


def _splits(data: ClassificationDataSettings, seed: int) -> tuple[LabeledTexts, LabeledTexts, str]:
    if not data.train:
        raise ConfigError("data.train is missing: give a CSV with 'text' and 'label' columns")
    rows = read_labeled(data.train, data.skip_bad)
    if data.eval:
        return rows, read_labeled(data.eval, data.skip_bad, min_classes=1), f"{data.train}; validation {data.eval}"
    order = list(range(len(rows.texts)))
    random.Random(seed).shuffle(order)
    held = set(order[: max(1, round(data.val_fraction * len(order)))])
    pick = lambda keep: LabeledTexts([t for i, t in enumerate(rows.texts) if (i in held) == keep],  # noqa: E731
                                     [x for i, x in enumerate(rows.labels) if (i in held) == keep])  # fmt: skip
    return pick(False), pick(True), f"{data.train} ({data.val_fraction:.0%} held out, seed {seed})"


def _model(recipe: TextClassificationRecipe, texts: list[str], classes: list[str]):
    """The classifier, its tokenizer and the summary lines saying where they come from."""
    fields = {k: v for k, v in recipe.model.items() if k not in ("init", "preset")}
    if "init" in recipe.model:
        bundle = load_bert(recipe.model["init"], task="base")
        source = f"BERT {recipe.model['init']}"
        model, lines = sequence_classifier_from_encoder(bundle.encoder, classes, source, **fields)
        return model, bundle.tokenizer, [f"tokenizer: the init model's ({bundle.tokenizer.vocab_size} tokens)", *lines]
    tokenizer, origin = run_tokenizer(recipe.train.resume, "", texts, "wordpiece", recipe.data.vocab_size, True)
    preset = recipe.model.get("preset", "bert_mini")
    base = create_model(preset, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, **fields)
    model = EncoderForSequenceClassification(base.config.replace(num_labels=len(classes)))
    return model, tokenizer, [f"tokenizer: {origin}", f"init: {preset}, random initialisation"]


def train_text_classifier(recipe: TextClassificationRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune (or train) the classifier on the engine; the model directories get the tokenizer and labels.json.

    Raises:
        ValueError: bad data, or validation labels that training never saw.
    """
    context = init_distributed()
    start = time.perf_counter()
    train_rows, eval_rows, where = _splits(recipe.data, recipe.train.seed)
    classes = train_rows.classes
    unseen = sorted(set(eval_rows.labels) - set(classes))
    if unseen:
        raise ValueError(f"validation labels never seen in training: {unseen}; training labels: {classes}")
    seed_everything(recipe.train.seed)
    try:
        model, tokenizer, lines = _model(recipe, train_rows.texts, classes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    index = {name: i for i, name in enumerate(classes)}
    limit = min(recipe.data.max_tokens, model.config.max_len)
    train_data = _Encoded(train_rows.texts, [index[x] for x in train_rows.labels], tokenizer, limit)
    eval_data = _Encoded(eval_rows.texts, [index[x] for x in eval_rows.labels], tokenizer, limit)
    majority = max(eval_rows.labels.count(name) for name in classes) / len(eval_rows.labels)
    parameters = sum(p.numel() for p in model.parameters())
    summary = [
        f"data: {where}: {len(train_data)} training / {len(eval_data)} validation texts; {len(classes)} classes "
        f"({', '.join(classes[:8])}); majority class {majority:.1%} of validation",
        *lines,
        f"model: BERT classifier, {model.config.num_layers} layers x {model.config.d_model}, "
        f"{parameters / 1e6:.2f}M parameters",
    ]
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n", LABELS_FILE: json.dumps(classes) + "\n",
             **tokenizer.files()}  # fmt: skip
    collate = functools.partial(encode_texts, pad_id=tokenizer.pad_id)
    result = train(
        model, ClassificationTask(len(classes)), train_data, recipe.train, eval_data=eval_data, collate_fn=collate,
        echo=echo, run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:
        for directory in (result.model_dir, result.best_model_dir):
            if directory is not None:
                tokenizer.save(directory)
                (directory / LABELS_FILE).write_text(json.dumps(classes) + "\n", encoding="utf-8")
        accuracy = result.metrics.get("accuracy")
        shown = f", validation accuracy {accuracy:.2%} (majority class {majority:.2%})" if accuracy is not None else ""
        echo(f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps{shown}; model in "
             f"{result.best_model_dir or result.model_dir}")  # fmt: skip
    return result
