"""Language-model pretraining, explicitly: read documents, train a tokenizer, build BERT (masked LM) or GPT (causal
LM), train on the engine, save the model with its tokenizer.

One recipe for both objectives (``objective = "mlm" | "lm"`` in the ``[data]`` table): masked-LM
pretraining masks 15% of the tokens of each document anew every time it is seen (RoBERTa's dynamic
masking, :func:`~polyformer.core.mask_tokens` through the engine's ``MaskedLMTask``); causal-LM
training predicts every next token of each document (``CausalLMTask``). Documents longer than
``block_size`` tokens are cut into blocks. Sections: ``[model]`` (a preset name plus its config
fields; the vocabulary and special ids come from the tokenizer), ``[tokenizer]``, ``[data]`` and
``[train]``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.apps.engine import (
    CausalLMTask,
    MaskedLMTask,
    TrainingConfig,
    TrainResult,
    init_distributed,
    seed_everything,
    train,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.text_common import run_tokenizer
from polyformer.apps.recipes.typed_config import ConfigError
from polyformer.core import create_model, mask_tokens
from polyformer.text.bible import load_bible_pairs
from polyformer.text.corpus import load_corpus
from polyformer.text.data import read_texts
from polyformer.text.tokenizer import TextTokenizer, pad_token_ids

__all__ = ["LMDataSettings", "LMRecipe", "LMTokenizerSettings", "load_lm_recipe", "train_language_model"]

EMBEDDED = ("bible-en", "bible-es", "shakespeare")
OBJECTIVES = {"mlm": ("wordpiece", "bert_mini"), "lm": ("bpe", "gpt_mini")}  # objective -> default tokenizer, preset


@dataclass
class LMDataSettings:
    """What the model reads and how it learns from it."""

    objective: str = "mlm"  # mlm (masked LM, BERT) | lm (causal LM, GPT)
    train: str = "bible-en"  # bible-en | bible-es | shakespeare | a text file (one document per line) | a folder
    eval: str = ""  # validation documents; "" = the Bible's valid books, else the last 5% of the documents
    block_size: int = 128  # tokens per training sequence (longer documents are cut into blocks)
    mask_prob: float = 0.15  # share of tokens masked (mlm)
    train_limit: int = 0  # use only the first N documents; 0 = all
    eval_limit: int = 400  # validation documents; 0 = all
    skip_bad: bool = False  # skip undecodable lines (counted) instead of stopping

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"data.objective must be one of {sorted(OBJECTIVES)}, got {self.objective!r}")
        if self.block_size < 8 or not 0.0 < self.mask_prob < 1.0:
            raise ValueError("data.block_size must be at least 8 and data.mask_prob in (0, 1)")


@dataclass
class LMTokenizerSettings:
    """The tokenizer ("" kind = WordPiece for mlm, byte-level BPE for lm)."""

    kind: str = ""  # wordpiece | bpe | unigram; "" = the objective's usual one
    vocab_size: int = 8000
    lowercase: bool = False
    path: str = ""  # an existing tokenizer instead of training one


@dataclass
class LMRecipe:
    name: str
    model: dict[str, Any] = field(default_factory=dict)
    tokenizer: LMTokenizerSettings = field(default_factory=LMTokenizerSettings)
    data: LMDataSettings = field(default_factory=LMDataSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


FROM_TOKENIZER = ("vocab_size", "pad_id", "mask_id", "bos_id", "eos_id")


def load_lm_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> LMRecipe:
    """Read a language-model recipe config with ``key=value`` overrides (``[model]`` is a preset plus its fields).

    Raises:
        FileNotFoundError: no such config.
        ValueError: unknown sections or fields, or invalid values.
    """
    derived = dict.fromkeys(FROM_TOKENIZER, "the tokenizer")
    return load_recipe_file(LMRecipe, name_or_path, overrides, derived=derived)


def _documents(source: str, split: str, skip_bad: bool) -> list[str]:
    if source in ("bible-en", "bible-es"):
        return [v.en if source == "bible-en" else v.es for v in load_bible_pairs(split)]
    if source == "shakespeare":
        lines = [line.strip() for line in load_corpus().splitlines() if line.strip()]
        cut = int(0.95 * len(lines))
        return lines[:cut] if split == "train" else lines[cut:]
    return read_texts(source, skip_bad).texts


def _splits(data: LMDataSettings) -> tuple[list[str], list[str], str]:
    if data.train.startswith("bible"):
        train_docs, eval_docs = _documents(data.train, "train", False), _documents(data.train, "valid", False)
        where = f"the embedded Bible ({data.train[-2:]}), validation on whole held-out books"
    else:
        docs = _documents(data.train, "train", data.skip_bad)
        held = max(1, len(docs) // 20)
        train_docs, eval_docs, where = docs[:-held], docs[-held:], f"{data.train} (the last 5% held out)"
    if data.eval:
        eval_docs = _documents(data.eval, "valid", data.skip_bad)
        where = where.split(" (")[0] + f"; validation on {data.eval}"
    if data.train_limit:
        train_docs = train_docs[: data.train_limit]
    if data.eval_limit:
        eval_docs = eval_docs[: data.eval_limit]
    if len(train_docs) < 1 or len(eval_docs) < 1:
        raise ValueError(f"{data.train}: too few documents to train and validate on")
    return train_docs, eval_docs, where


class TokenBlocks(Dataset):
    """Documents tokenized with the tokenizer's template, cut into blocks of at most ``block_size`` ids."""

    def __init__(self, texts: Sequence[str], tokenizer: TextTokenizer, block_size: int):
        self.blocks: list[Tensor] = []
        for encoding in tokenizer.tokenizer.encode_batch(list(texts)):
            ids = encoding.ids
            for start in range(0, len(ids), block_size):
                piece = ids[start : start + block_size]
                if len(piece) >= 2:
                    self.blocks.append(torch.tensor(piece))
        if not self.blocks:
            raise ValueError("the documents give no block of at least 2 tokens")

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> Tensor:
        return self.blocks[index]


def pad_blocks(batch: Sequence[Tensor], pad_id: int) -> dict[str, Tensor]:
    """Right-pad blocks to (B, T) with their attention mask."""
    ids, mask = pad_token_ids(batch, pad_id)
    return {"input_ids": ids, "attention_mask": mask}


def _tokenizer(recipe: LMRecipe, docs: list[str]) -> tuple[TextTokenizer, str]:
    settings, kind = recipe.tokenizer, recipe.tokenizer.kind or OBJECTIVES[recipe.data.objective][0]
    return run_tokenizer(recipe.train.resume, settings.path, docs, kind, settings.vocab_size, settings.lowercase)


def _model_and_task(recipe: LMRecipe, tokenizer: TextTokenizer):
    fields = dict(recipe.model)
    preset = fields.pop("preset", OBJECTIVES[recipe.data.objective][1])
    ids = {role: tokenizer.token_id(role) for role in ("pad", "mask", "cls", "sep", "bos", "eos", "unk")}
    if recipe.data.objective == "mlm":
        if ids["mask"] is None:
            raise ValueError(f"masked-LM pretraining needs a tokenizer with a mask token; {tokenizer} has none")
        fields.update(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, mask_id=ids["mask"])
        specials = [i for i in ids.values() if i is not None]
        masking = functools.partial(
            mask_tokens, mask_id=ids["mask"], vocab_size=tokenizer.vocab_size, special_ids=specials,
            pad_id=tokenizer.pad_id, mask_prob=recipe.data.mask_prob,
        )  # fmt: skip
        task: Any = MaskedLMTask(mask_fn=masking)
    else:
        end = ids["eos"] if ids["eos"] is not None else tokenizer.pad_id
        fields.update(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, eos_id=end, bos_id=ids["bos"] or end)
        task = CausalLMTask(pad_id=None)
    try:
        model = create_model(preset, **fields)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    return model, task, preset


def train_language_model(recipe: LMRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Train the recipe's BERT or GPT on the engine; the run's ``model/`` and ``best_model/`` get the tokenizer."""
    context = init_distributed()
    start = time.perf_counter()
    train_docs, eval_docs, where = _splits(recipe.data)
    tokenizer, origin = _tokenizer(recipe, train_docs)
    seed_everything(recipe.train.seed)
    model, task, preset = _model_and_task(recipe, tokenizer)
    block = min(recipe.data.block_size, model.config.max_len)
    train_data, eval_data = TokenBlocks(train_docs, tokenizer, block), TokenBlocks(eval_docs, tokenizer, block)
    parameters = sum(p.numel() for p in model.parameters())
    objective = "masked LM" if recipe.data.objective == "mlm" else "causal LM"
    summary = [
        f"data: {where}: {len(train_docs)} training / {len(eval_docs)} validation documents -> {len(train_data)} / "
        f"{len(eval_data)} blocks of at most {block} tokens",
        f"tokenizer: {origin}",
        f"model: {preset} ({objective}), {parameters / 1e6:.2f}M parameters",
    ]
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n", **tokenizer.files()}
    collate = functools.partial(pad_blocks, pad_id=tokenizer.pad_id)
    result = train(
        model, task, train_data, recipe.train, eval_data=eval_data, collate_fn=collate, echo=echo,
        run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:
        for directory in (result.model_dir, result.best_model_dir):
            if directory is not None:
                tokenizer.save(directory)
        loss = result.metrics.get("loss")
        shown = f", validation loss {loss:.3f}" if loss is not None else ""
        echo(f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps{shown}; model in "
             f"{result.best_model_dir or result.model_dir}")  # fmt: skip
    return result
