"""DNA masked-LM pretraining, explicitly: read genomes, cut windows, tokenize (k-mers or BPE), mask
(DNABERT's k-mer-aware masking), train a DNABERT-shaped encoder on the engine, save it with its tokenizer.

``data.sources`` lists FASTA / FASTQ / GenBank files (gzipped or not) or ``genome``, the shipped
*Chlamydia trachomatis* genome. The last ``data.val_fraction`` of every record is held out for
validation (a contiguous stretch, so no validation base is also a training base); the rest is cut
into windows of ``data.window`` bases every ``data.stride`` bases. The summary prints the k-mer
unigram baseline: the masked-LM loss of always predicting the training token frequencies, which
the model must beat to have learned anything beyond composition.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyformer.apps.engine import MaskedLMTask, TrainingConfig, TrainResult, init_distributed, seed_everything, train
from polyformer.apps.recipes.bio_common import (
    DnaBatches,
    DnaTokenizerSettings,
    RandomStrand,
    dna_tokenizer_files,
    run_dna_tokenizer,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.bio import DnaTokenizer, mask_kmers
from polyformer.bio.data import GENOME_PATH, read_sequences
from polyformer.bio.dnabert.pretrained import save_dna_files
from polyformer.core import create_model

__all__ = ["DnaPretrainData", "DnaPretrainRecipe", "load_pretrain_recipe", "pretrain_dna", "unigram_baseline"]

EMBEDDED_GENOME = "genome"


@dataclass
class DnaPretrainData:
    """The genomes and how they are cut."""

    sources: list[str] = field(default_factory=lambda: [EMBEDDED_GENOME])  # sequence files, or "genome"
    window: int = 512  # bases per training window
    stride: int = 256  # bases from one window's start to the next (< window: overlapping windows)
    val_fraction: float = 0.05  # the last share of every record, held out for validation
    mask_prob: float = 0.15  # share of tokens masked (in spans of k for overlapping k-mers)
    rc_prob: float = 0.5  # chance of training on a window's reverse complement instead
    skip_bad: bool = False  # skip records with invalid characters (counted) instead of stopping

    def __post_init__(self) -> None:
        if self.window < 8 or not 1 <= self.stride or not 0.0 < self.val_fraction < 0.5:
            raise ValueError("data.window must be at least 8, data.stride at least 1, data.val_fraction in (0, 0.5)")
        if not 0.0 < self.mask_prob < 1.0 or not 0.0 <= self.rc_prob <= 1.0:
            raise ValueError("data.mask_prob must be in (0, 1) and data.rc_prob in [0, 1]")


@dataclass
class DnaPretrainRecipe:
    name: str
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "dnabert_mini"})
    tokenizer: DnaTokenizerSettings = field(default_factory=DnaTokenizerSettings)
    data: DnaPretrainData = field(default_factory=DnaPretrainData)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_pretrain_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> DnaPretrainRecipe:
    """Read a DNA pretraining recipe config with ``key=value`` overrides (see :func:`load_recipe_file`)."""
    derived = {name: "the tokenizer" for name in ("vocab_size", "pad_id")}
    return load_recipe_file(DnaPretrainRecipe, name_or_path, overrides, derived=derived)


def _windows(sequence: str, window: int, stride: int) -> list[str]:
    if len(sequence) <= window:
        return [sequence] if sequence else []
    starts = list(range(0, len(sequence) - window + 1, stride))
    return [sequence[s : s + window] for s in starts]


def _splits(data: DnaPretrainData) -> tuple[list[str], list[str], str]:
    """Training and validation windows, and a line saying where they come from."""
    train_windows: list[str] = []
    eval_windows: list[str] = []
    bases, skipped, names = 0, 0, []
    for source in data.sources:
        path = GENOME_PATH if source == EMBEDDED_GENOME else Path(source)
        records = read_sequences(path, data.skip_bad)
        skipped += len(records.skipped)
        names.append("the shipped C. trachomatis genome" if source == EMBEDDED_GENOME else str(path))
        for sequence in records.sequences:
            cut = round(len(sequence) * (1 - data.val_fraction))
            train_windows += _windows(sequence[:cut], data.window, data.stride)
            eval_windows += _windows(sequence[cut:], data.window, data.window)
            bases += len(sequence)
    if not data.sources:
        raise ConfigError("data.sources is empty: give FASTA/FASTQ/GenBank files, or 'genome' for the shipped one")
    if not eval_windows or not train_windows:
        raise ValueError(f"{', '.join(names)}: too little sequence for windows of {data.window} bases")
    where = f"{', '.join(names)} ({bases:,} bases" + (f"; {skipped} bad records skipped)" if skipped else ")")
    return train_windows, eval_windows, where


def unigram_baseline(tokenizer: DnaTokenizer, train_windows: Sequence[str], eval_windows: Sequence[str]) -> float:
    """Cross-entropy (nats) of predicting every validation token from the training token frequencies."""
    counts = Counter(token for window in train_windows for token in tokenizer.tokenize(window))
    total, vocab = sum(counts.values()), tokenizer.vocab_size
    tokens = [token for window in eval_windows for token in tokenizer.tokenize(window)]
    # add-one smoothing: a validation token never seen in training still has a finite cost
    return -sum(math.log((counts[t] + 1) / (total + vocab)) for t in tokens) / max(len(tokens), 1)


def pretrain_dna(recipe: DnaPretrainRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Masked-LM pretraining on the engine; the run's ``model/`` and ``best_model/`` get the tokenizer.

    Raises:
        ValueError: bad data or settings.
    """
    context = init_distributed()
    start = time.perf_counter()
    train_windows, eval_windows, where = _splits(recipe.data)
    tokenizer, origin = run_dna_tokenizer(recipe.tokenizer, recipe.train.resume, train_windows)
    seed_everything(recipe.train.seed)
    fields = dict(recipe.model)
    preset = fields.pop("preset", "dnabert_mini")
    fields.update(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
    fields.pop("k", None)  # the tokenizer's k sets the vocabulary
    try:
        model = create_model(preset, **fields)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    masking = functools.partial(mask_kmers, tokenizer=tokenizer, mask_prob=recipe.data.mask_prob)
    baseline = unigram_baseline(tokenizer, train_windows[:2000], eval_windows)
    parameters = sum(p.numel() for p in model.parameters())
    summary = [
        f"data: {where}: {len(train_windows)} training / {len(eval_windows)} validation windows of "
        f"{recipe.data.window} bases; reverse complement with p={recipe.data.rc_prob}",
        f"tokenizer: {origin}; masking {recipe.data.mask_prob:.0%}"
        + (f" in spans of {tokenizer.k} k-mers" if getattr(tokenizer, "overlapping", False) else ""),
        f"model: {preset} (masked LM), {parameters / 1e6:.2f}M parameters; "
        f"k-mer unigram baseline loss {baseline:.3f} on validation",
    ]
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n", **dna_tokenizer_files(tokenizer),
             "baseline.json": json.dumps({"unigram_loss": baseline}) + "\n"}  # fmt: skip
    result = train(
        model, MaskedLMTask(mask_fn=masking), RandomStrand(train_windows, recipe.data.rc_prob), recipe.train,
        eval_data=eval_windows, collate_fn=DnaBatches(tokenizer, model.config.max_tokens), echo=echo,
        run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:
        for directory in (result.model_dir, result.best_model_dir):
            if directory is not None:
                save_dna_files(directory, tokenizer, None)
        loss = result.metrics.get("loss")
        shown = f", validation loss {loss:.3f} (unigram baseline {baseline:.3f})" if loss is not None else ""
        echo(f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps{shown}; model in "
             f"{result.best_model_dir or result.model_dir}")  # fmt: skip
    return result
