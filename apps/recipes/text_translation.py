"""Translation, explicitly: read pairs, train a shared tokenizer, build the encoder-decoder, train, score BLEU, save.

A recipe is data: a TOML config (``apps/recipes/configs/*.toml``) with a ``[model]`` table
(:class:`~polyformer.core.TransformerConfig` fields; the vocabulary and special ids come from the
tokenizer), ``[tokenizer]`` (:class:`TokenizerSettings`), ``[data]`` (:class:`TranslationDataSettings`),
``[decode]`` (:class:`DecodeSettings`) and ``[train]`` (the engine's
:class:`~polyformer.apps.engine.TrainingConfig`), changed by ``key=value`` overrides. The shipped
checkpoint ``apps/checkpoints/translation_en_es`` comes from ``bible_en_es.toml``.

Training is teacher-forced, label-smoothed cross-entropy on the engine (validation loss and token
accuracy at each checkpoint); at the end the best model translates the test pairs with beam
search and sacreBLEU scores them (BLEU and chrF, written to ``test_scores.json``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyformer.apps.engine import (
    Seq2SeqTask,
    TrainingConfig,
    TrainResult,
    init_distributed,
    resolve_checkpoint,
    run_of,
    seed_everything,
    train,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.text_common import run_tokenizer
from polyformer.apps.recipes.typed_config import ConfigError, check_fields
from polyformer.core import EncoderDecoderTransformer, TransformerConfig
from polyformer.text.bible import load_bible_pairs
from polyformer.text.data import SentencePairs, read_pairs
from polyformer.text.tokenizer import TextTokenizer
from polyformer.text.translation import (
    TranslationPairs,
    load_source_tokenizer,
    pad_pairs,
    save_tokenizers,
    tokenizer_files,
    translate,
    translation_config,
)

__all__ = [
    "DecodeSettings",
    "TokenizerSettings",
    "TranslationDataSettings",
    "TranslationRecipe",
    "load_translation_recipe",
    "score_translations",
    "train_translation",
]

BIBLE = "bible"
FROM_TOKENIZER = ("vocab_size", "src_vocab_size", "pad_id", "bos_id", "eos_id")


@dataclass
class TranslationDataSettings:
    """Where the sentence pairs come from."""

    train: str = BIBLE  # "bible" (the embedded English-Spanish Bible) or a TSV / JSONL file of pairs
    eval: str = ""  # validation pairs file; "" = the Bible's valid books, or 5% of a file's pairs held out
    test: str = ""  # test pairs file; "" = the Bible's test books (a file: none, unless given)
    reverse: bool = False  # swap the sides: translate target -> source (Spanish -> English for the Bible)
    max_tokens: int = 128  # drop training pairs with more tokens on either side
    train_limit: int = 0  # use only the first N training pairs; 0 = all
    eval_limit: int = 400  # validation pairs scored during training; 0 = all
    skip_bad: bool = False  # skip malformed lines of a pairs file (counted) instead of stopping
    label_smoothing: float = 0.1  # cross-entropy label smoothing

    def __post_init__(self) -> None:
        if self.max_tokens < 4 or self.train_limit < 0 or self.eval_limit < 0:
            raise ValueError("data.max_tokens must be at least 4, data.train_limit and data.eval_limit >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"data.label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class TokenizerSettings:
    """The tokenizer shared by both languages."""

    kind: str = "unigram"  # unigram | bpe (trained on the training pairs, both sides)
    vocab_size: int = 8000  # tokens, special ones included
    lowercase: bool = False  # lower-case everything first
    path: str = ""  # an existing tokenizer (tokenizer.json or a directory) instead of training one
    shared: bool = True  # one vocabulary for both languages; false = a source tokenizer of its own

    def __post_init__(self) -> None:
        if self.kind not in ("unigram", "bpe"):
            raise ValueError(f"tokenizer.kind must be 'unigram' or 'bpe' (with pad, bos and eos), got {self.kind!r}")


@dataclass
class DecodeSettings:
    """How the test pairs are translated at the end."""

    num_beams: int = 4  # beam width (1 = greedy)
    length_penalty: float = 1.0  # exponent of the length in the beam score
    batch_size: int = 32  # sentences per decoding batch
    test_limit: int = 0  # translate only the first N test pairs; 0 = all


@dataclass
class TranslationRecipe:
    """A full translation recipe."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    tokenizer: TokenizerSettings = field(default_factory=TokenizerSettings)
    data: TranslationDataSettings = field(default_factory=TranslationDataSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_translation_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> TranslationRecipe:
    """Read a translation recipe config (shipped name or TOML path) with ``key=value`` overrides.

    Raises:
        FileNotFoundError: no such config.
        ValueError: unknown sections or fields, or invalid values (the message names them).
    """
    def check_model(table: dict) -> dict:
        return check_fields(TransformerConfig, table, "model")

    derived = dict.fromkeys(FROM_TOKENIZER, "the tokenizer")
    return load_recipe_file(TranslationRecipe, name_or_path, overrides, check_model=check_model, derived=derived)


@dataclass
class _Splits:
    train: SentencePairs
    eval: SentencePairs
    test: SentencePairs | None
    description: str


def _bible_side(split: str, reverse: bool) -> SentencePairs:
    verses = load_bible_pairs(split)
    english, spanish = [v.en for v in verses], [v.es for v in verses]
    return SentencePairs(spanish, english) if reverse else SentencePairs(english, spanish)


def _flip(pairs: SentencePairs, reverse: bool) -> SentencePairs:
    return SentencePairs(pairs.targets, pairs.sources, pairs.skipped) if reverse else pairs


def _limit(pairs: SentencePairs, count: int) -> SentencePairs:
    return pairs if not count else SentencePairs(pairs.sources[:count], pairs.targets[:count], pairs.skipped)


def _read_splits(data: TranslationDataSettings) -> _Splits:
    """Train, validation and test pairs as the data settings say (sources and targets swapped with ``reverse``)."""
    if data.train == BIBLE:
        train_pairs, where = _bible_side("train", data.reverse), "the embedded English-Spanish Bible"
        eval_pairs = _flip(read_pairs(data.eval, data.skip_bad), data.reverse) if data.eval else _bible_side(
            "valid", data.reverse
        )
        test_pairs = _flip(read_pairs(data.test, data.skip_bad), data.reverse) if data.test else _bible_side(
            "test", data.reverse
        )
        direction = "es -> en" if data.reverse else "en -> es"
        description = f"{where} ({direction}; validation and test: whole books never trained on)"
    else:
        train_pairs = _flip(read_pairs(data.train, data.skip_bad), data.reverse)
        if data.eval:
            eval_pairs = _flip(read_pairs(data.eval, data.skip_bad), data.reverse)
        else:
            held = max(1, len(train_pairs) // 20)
            eval_pairs = SentencePairs(train_pairs.sources[-held:], train_pairs.targets[-held:])
            train_pairs = SentencePairs(train_pairs.sources[:-held], train_pairs.targets[:-held], train_pairs.skipped)
        test_pairs = _flip(read_pairs(data.test, data.skip_bad), data.reverse) if data.test else None
        description = f"{data.train}" + ("" if data.eval else " (the last 5% of its pairs held out for validation)")
    return _Splits(_limit(train_pairs, data.train_limit), _limit(eval_pairs, data.eval_limit), test_pairs, description)


def _tokenizers(recipe: TranslationRecipe, pairs: SentencePairs) -> tuple[TextTokenizer, TextTokenizer | None, str]:
    """The target (or shared) tokenizer, the source's own (or None), and where they come from: the resumed run's,
    the configured one, or trained on the training pairs (both sides, or each side for its own)."""
    settings = recipe.tokenizer
    options = (settings.kind, settings.vocab_size, settings.lowercase)
    if settings.shared:
        texts = [*pairs.sources, *pairs.targets]
        tokenizer, origin = run_tokenizer(recipe.train.resume, settings.path, texts, *options)
        return tokenizer, None, origin + " (shared by both sides)"
    tokenizer, origin = run_tokenizer(recipe.train.resume, settings.path, pairs.targets, *options)
    source = None
    if recipe.train.resume:
        source = load_source_tokenizer(run_of(resolve_checkpoint(recipe.train.resume)))
    if source is None:
        source, _ = run_tokenizer(None, "", pairs.sources, *options)
    return tokenizer, source, f"target: {origin}; source: its own, {source.vocab_size} tokens"


def score_translations(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacreBLEU, default settings) of ``hypotheses`` against one reference each."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    refs = [list(references)]
    return {
        "bleu": round(sacrebleu.corpus_bleu(list(hypotheses), refs).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(list(hypotheses), refs).score, 2),
        "sentences": len(hypotheses),
    }


def train_translation(
    recipe: TranslationRecipe, echo: Callable[[str], None] = print
) -> tuple[TrainResult, dict[str, float] | None]:
    """Train the recipe's translation model on the engine; then score the test pairs (main process).

    Works unchanged under torchrun. The run directory gets ``recipe.json``, the tokenizer, the
    checkpoints, ``metrics.jsonl``, ``model/`` and ``best_model/`` (each with the tokenizer, so
    that ``polyformer text translate --model DIR`` needs nothing else) and ``test_scores.json``.

    Returns:
        The engine's result, and the test BLEU/chrF (None without test pairs or off the main process).
    """
    context = init_distributed()
    start = time.perf_counter()
    splits = _read_splits(recipe.data)
    tokenizer, source_tokenizer, origin = _tokenizers(recipe, splits.train)
    seed_everything(recipe.train.seed)
    try:
        model = EncoderDecoderTransformer(translation_config(tokenizer, source_tokenizer, **recipe.model))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    limit = min(recipe.data.max_tokens, model.config.max_len)
    train_data = TranslationPairs(splits.train.sources, splits.train.targets, tokenizer, limit, source_tokenizer)
    eval_data = TranslationPairs(
        splits.eval.sources, splits.eval.targets, tokenizer, model.config.max_len, source_tokenizer
    )
    parameters = sum(p.numel() for p in model.parameters())
    cfg = model.config
    skipped = len(splits.train.skipped) + len(splits.eval.skipped)
    summary = [
        f"data: {splits.description}: {len(train_data)} training pairs ({train_data.dropped} longer than {limit} "
        f"tokens dropped), {len(eval_data)} validation pairs"
        + (f", {len(splits.test)} test pairs" if splits.test is not None else ", no test pairs")
        + (f"; {skipped} malformed lines skipped" if skipped else ""),
        f"tokenizer: {origin}",
        f"model: encoder-decoder, {cfg.encoder_layers}+{cfg.decoder_layers} layers, width {cfg.d_model}, "
        f"{cfg.num_heads} heads, {parameters / 1e6:.2f}M parameters; label smoothing {recipe.data.label_smoothing}",
    ]
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n"}
    files.update(tokenizer_files(tokenizer, source_tokenizer))
    task = Seq2SeqTask(label_smoothing=recipe.data.label_smoothing, pad_id=cfg.pad_id)
    collate = functools.partial(pad_pairs, pad_id=cfg.pad_id)
    result = train(
        model, task, train_data, recipe.train, eval_data=eval_data, collate_fn=collate, echo=echo,
        run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if not context.is_main:
        return result, None
    for directory in (result.model_dir, result.best_model_dir):
        if directory is not None:
            save_tokenizers(directory, tokenizer, source_tokenizer)
    scores = None
    if splits.test is not None:
        scores = _score_test(result, splits.test, tokenizer, recipe.decode, source_tokenizer)
        (result.out_dir / "test_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    line = f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps"
    if scores is not None:
        line += f"; test BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} on {scores['sentences']} sentences"
    echo(line + f"; model in {result.best_model_dir or result.model_dir}")
    return result, scores


def _score_test(result, test: SentencePairs, tokenizer: TextTokenizer, decode: DecodeSettings, source_tokenizer=None):
    model = EncoderDecoderTransformer.from_pretrained(result.best_model_dir or result.model_dir)
    sources, references = _limit(test, decode.test_limit).sources, _limit(test, decode.test_limit).targets
    hypotheses = translate(
        model, tokenizer, sources, num_beams=decode.num_beams, batch_size=decode.batch_size,
        length_penalty=decode.length_penalty, source_tokenizer=source_tokenizer,
    )  # fmt: skip
    return score_translations(hypotheses, references)
