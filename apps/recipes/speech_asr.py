"""Speech recognition, explicitly: read the clips, build or load a Whisper-style model, train on the engine, score.

A recipe is data: a TOML config (``apps/recipes/configs/*.toml``) with ``[model]``
(a ``preset`` such as ``whisper_nano`` and/or :class:`~polyformer.speech.whisper.WhisperConfig` fields for a
model trained from scratch; the vocabulary and the special ids come from the tokenizer), ``[tokenizer]``
(:class:`AsrTokenizerSettings`), ``[data]`` (:class:`AsrDataSettings`) and ``[train]`` (the engine's
:class:`~polyformer.apps.engine.TrainingConfig`), changed by ``key=value`` overrides. With ``data.init``
(``polyformer speech finetune-asr --init DIR``) the model and its tokenizer are loaded instead (ours, a Hugging
Face or a faster-whisper directory, or ``whisper-base``), and ``[model]`` may only change ``dropout`` and
``attention_dropout``.

Training is teacher-forced cross-entropy on the transcription tokens (the prompt is not predicted), with
SpecAugment on the features; every validation also decodes the validation clips greedily and reports their
word and character error rates (``wer``, ``cer``; the text normalised by
:func:`~polyformer.speech.metrics.normalize_transcript`), and the lowest ``wer`` picks ``best_model/``. At the
end the best model transcribes the test clips (:func:`evaluate_asr`): ``test_scores.json`` and
``test_transcripts.tsv`` in the run directory.
"""

from __future__ import annotations

import csv
import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyformer.apps.engine import (
    Seq2SeqTask,
    TrainingConfig,
    TrainResult,
    autocast,
    init_distributed,
    resolve_checkpoint,
    resolve_precision,
    run_of,
    seed_everything,
    train,
)
from polyformer.apps.pipelines.speech import load_speech_model
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.typed_config import ConfigError, check_fields
from polyformer.core import create_model
from polyformer.core.objectives import IGNORE_INDEX, ctc_loss, token_cross_entropy
from polyformer.speech.audio import SpecAugment, load_audio
from polyformer.speech.data import (
    LIBRIVOX_DIR,
    SPOKEN_CORPUS_DIR,
    AsrBatch,
    AsrExamples,
    AudioClips,
    SpeechDataError,
    collate_asr,
    read_audio_splits,
)
from polyformer.speech.metrics import char_error_rate, normalize_transcript, word_error_rate
from polyformer.speech.whisper import Whisper, WhisperConfig
from polyformer.speech.whisper.decoding import DecodingOptions
from polyformer.speech.whisper.tokenizer import WhisperTokenizer, language_code
from polyformer.speech.whisper.transcribe import transcribe

__all__ = [
    "EMBEDDED_DATA",
    "AsrDataSettings",
    "AsrRecipe",
    "AsrTask",
    "AsrTokenizerSettings",
    "evaluate_asr",
    "load_asr_recipe",
    "read_asr_data",
    "score_transcripts",
    "train_asr",
]

#: Names of the embedded data sets (anything else is a path).
EMBEDDED_DATA = {"spoken": SPOKEN_CORPUS_DIR, "librivox": LIBRIVOX_DIR}
TOKENIZER_FILE = "tokenizer.json"
FROM_TOKENIZER = ("vocab_size", "sot_id", "eos_id", "pad_id")
FINETUNE_MODEL_KEYS = ("dropout", "attention_dropout")
#: How WER and CER normalise both sides (:func:`~polyformer.speech.metrics.normalize_transcript`).
NORMALISATION = ("lower case, punctuation removed except in-word apostrophes, hyphens to spaces, Mr/Mrs/Dr/St/Ms/Jr "
                 "spelled out, single spaces")  # fmt: skip


@dataclass
class AsrDataSettings:
    """Where the clips come from, the prompt, augmentation and the model to start from."""

    train: str = "spoken"  # "spoken" (the embedded corpus) or a folder (metadata.csv, or train/ test/ splits), .jsonl
    eval: str = ""  # validation clips; "" = the data's validation/ split, else 5% of the training clips held out
    test: str = ""  # test clips; "" = the data's test/ split (none if it has none)
    skip_bad: bool = False  # leave out bad clips and rows (counted) instead of stopping
    eval_limit: int = 0  # validation clips decoded at each evaluation; 0 = all
    language: str = "en"  # the prompt's language token (multilingual vocabularies only)
    task: str = "transcribe"  # transcribe | translate (multilingual vocabularies only)
    init: str = ""  # fine-tune this model (ours, HF Whisper, faster-whisper, or "whisper-base"); "" = from scratch
    freeze_encoder: bool = False  # train only the decoder
    speed_perturb: list[float] = field(default_factory=list)  # training clips played at one of these speeds,
    # e.g. [0.9, 1.0, 1.1] (tempo and pitch change together); [] = as recorded
    spec_augment: bool = True  # SpecAugment on the training features
    freq_masks: int = 2
    freq_width: int = 15  # mel bins per frequency mask at most
    time_masks: int = 2
    time_width: int = 20  # frames per time mask at most (10 ms each)
    label_smoothing: float = 0.0
    ctc_weight: float = 0.0  # from scratch: weight of an auxiliary CTC loss on the encoder (joint CTC/attention,
    # Kim et al. 2017: the model learns to align far sooner); the rest is the decoder's cross-entropy
    max_new_tokens: int = 128  # tokens decoded per clip at evaluation

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"data.task must be 'transcribe' or 'translate', got {self.task!r}")
        language_code(self.language)
        if min(self.eval_limit, self.freq_masks, self.freq_width, self.time_masks, self.time_width) < 0:
            raise ValueError("data.eval_limit and the SpecAugment counts and widths must be >= 0")
        if any(not 0.5 <= speed <= 2.0 for speed in self.speed_perturb):
            raise ValueError(f"data.speed_perturb factors must be within [0.5, 2], got {self.speed_perturb}")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError(f"data.ctc_weight must be in [0, 1), got {self.ctc_weight}")
        if not 0.0 <= self.label_smoothing < 1.0 or self.max_new_tokens < 1:
            raise ValueError("data.label_smoothing must be in [0, 1) and data.max_new_tokens at least 1")


@dataclass
class AsrTokenizerSettings:
    """The tokenizer of a model trained from scratch (a fine-tuned model keeps its own)."""

    kind: str = "char"  # char (one token per character of the training transcriptions) | bpe (byte-level)
    vocab_size: int = 1000  # bpe: text tokens
    path: str = ""  # an existing Whisper tokenizer.json instead of training one

    def __post_init__(self) -> None:
        if self.kind not in ("char", "bpe"):
            raise ValueError(f"tokenizer.kind must be 'char' or 'bpe', got {self.kind!r}")


@dataclass
class AsrRecipe:
    """A full speech-recognition recipe."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    tokenizer: AsrTokenizerSettings = field(default_factory=AsrTokenizerSettings)
    data: AsrDataSettings = field(default_factory=AsrDataSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_asr_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> AsrRecipe:
    """Read a speech-recognition recipe config (shipped name or TOML path) with ``key=value`` overrides.

    Raises:
        FileNotFoundError: no such config.
        ConfigError: unknown sections or fields, or invalid values (the message names them).
    """

    def check_model(table: dict) -> dict:
        return check_fields(WhisperConfig, table, "model", extra={"preset": str})

    derived = dict.fromkeys(FROM_TOKENIZER, "the tokenizer")
    return load_recipe_file(AsrRecipe, name_or_path, overrides, check_model=check_model, derived=derived)


# ----------------------------------------------------------------------------------------------- data
def _data_path(name: str) -> Path:
    return EMBEDDED_DATA.get(name, Path(name))


def read_asr_data(settings: AsrDataSettings) -> tuple[dict[str, AudioClips], str]:
    """Train, validation and (when there is one) test clips by split name, and a description of where from."""
    found = read_audio_splits(_data_path(settings.train), skip_bad=settings.skip_bad)
    splits = {"train": found["train"]}
    where = settings.train if settings.train not in EMBEDDED_DATA else f"the embedded {settings.train} corpus"
    if settings.eval:
        splits["validation"] = read_audio_splits(_data_path(settings.eval), skip_bad=settings.skip_bad)["train"]
    elif "validation" in found:
        splits["validation"] = found["validation"]
    else:
        train, held = _hold_out(found["train"], max(1, len(found["train"]) // 20))
        splits["train"], splits["validation"] = train, held
        where += " (5% of its training clips held out for validation)"
    if settings.test:
        splits["test"] = read_audio_splits(_data_path(settings.test), skip_bad=settings.skip_bad)["train"]
    elif "test" in found:
        splits["test"] = found["test"]
    if len(splits["train"]) < 2:
        raise SpeechDataError(f"{settings.train}: {len(splits['train'])} training clip(s); training needs more")
    return splits, where


def _hold_out(clips: AudioClips, count: int) -> tuple[AudioClips, AudioClips]:
    n = len(clips)
    return clips.select(range(n - count)), clips.select(range(n - count, n))


def _limit(clips: AudioClips, count: int) -> AudioClips:
    return clips if not count or count >= len(clips) else clips.select(range(count))


# ----------------------------------------------------------------------------------------------- task
@dataclass
class AsrTask(Seq2SeqTask):
    """Teacher-forced cross-entropy on :class:`~polyformer.speech.data.AsrBatch` batches, SpecAugment in training;
    validation adds ``wer`` and ``cer`` of greedy transcriptions (normalised text) to loss and token accuracy.

    With ``ctc_weight`` w (a model with a CTC head) the training loss is (1 - w) x cross-entropy + w x CTC of the
    encoder's CTC logits against the transcription tokens (blank = ``<|endoftext|>``; each clip's input length is
    its frames before padding, halved by the stride-2 stem).

    Args:
        tokenizer: the model's tokenizer (to read the transcriptions).
        prompt: the decoder prompt ids.
        spec_augment: applied to training features; None = none.
        max_new_tokens: decoding budget per clip at validation.
        ctc_weight: weight of the auxiliary CTC loss in training.
    """

    default_best: ClassVar[tuple[str, str]] = ("wer", "min")
    tokenizer: Any = None
    prompt: Sequence[int] = ()
    spec_augment: nn.Module | None = None
    max_new_tokens: int = 128
    ctc_weight: float = 0.0

    def _features(self, model: nn.Module, batch: AsrBatch) -> Tensor:
        if model.training and self.spec_augment is not None:
            return self.spec_augment(batch.features)
        return batch.features

    def logits_and_labels(self, model: nn.Module, batch: AsrBatch) -> tuple[Tensor, Tensor]:
        return model(self._features(model, batch), batch.tokens_in), batch.labels

    def loss(self, model: nn.Module, batch: AsrBatch) -> Tensor:
        if not self.ctc_weight:
            return super().loss(model, batch)
        logits, ctc_logits = model(self._features(model, batch), batch.tokens_in, ctc=True)
        attention = token_cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        return (1 - self.ctc_weight) * attention + self.ctc_weight * self._ctc(ctc_logits, batch)

    def _ctc(self, ctc_logits: Tensor, batch: AsrBatch) -> Tensor:
        """CTC of (B, S, V) logits against each row's labelled tokens before its end token."""
        blank = self.tokenizer.eot
        labels = batch.labels.masked_fill(batch.labels.eq(blank), IGNORE_INDEX)  # the end token is not spoken
        positions = torch.div(batch.frames + 1, 2, rounding_mode="floor").clamp(max=ctc_logits.shape[1])
        return ctc_loss(ctc_logits, positions, labels, blank=blank)

    def make_metrics(self) -> dict:
        from torchmetrics.text import CharErrorRate, WordErrorRate

        return {**super().make_metrics(), "wer": WordErrorRate(), "cer": CharErrorRate()}

    def update_metrics(self, metrics: dict, model: nn.Module, batch: AsrBatch) -> None:
        super().update_metrics({k: v for k, v in metrics.items() if k not in ("wer", "cer")}, model, batch)
        inner = getattr(model, "module", model)
        generated = inner.generate(batch.features, list(self.prompt), self.max_new_tokens).sequences
        hypotheses = [normalize_transcript(self.tokenizer.decode(row.tolist())) for row in generated]
        references = [normalize_transcript(text) for text in batch.texts]
        metrics["wer"].update(hypotheses, references)
        metrics["cer"].update(hypotheses, references)


# ----------------------------------------------------------------------------------------------- model
def _tokenizer(recipe: AsrRecipe, texts: Sequence[str]) -> tuple[WhisperTokenizer, str]:
    """The resumed run's tokenizer, else the configured file, else one trained on ``texts``; and where from."""
    if recipe.train.resume:
        saved = run_of(resolve_checkpoint(recipe.train.resume)) / TOKENIZER_FILE
        if saved.is_file():
            return WhisperTokenizer.from_file(saved), f"the resumed run's ({saved})"
    settings = recipe.tokenizer
    if settings.path:
        path = Path(settings.path)
        return WhisperTokenizer.from_file(path / TOKENIZER_FILE if path.is_dir() else path), settings.path
    tokenizer = WhisperTokenizer.train(texts, settings.vocab_size, languages=(), timestamps=False, kind=settings.kind)
    kind = "characters" if settings.kind == "char" else "byte-level BPE"
    return tokenizer, f"{kind}, {tokenizer.vocab_size} tokens, from the training transcriptions"


def _build_model(recipe: AsrRecipe, texts: Sequence[str]) -> tuple[Whisper, WhisperTokenizer, str]:
    """The model and tokenizer: loaded for fine-tuning (``data.init``), else built from ``[model]``."""
    if recipe.data.init:
        extra = sorted(set(recipe.model) - set(FINETUNE_MODEL_KEYS))
        if extra:
            raise ConfigError(f"model.{extra[0]}: a fine-tuned model keeps its architecture; [model] may only set "
                              f"{', '.join(FINETUNE_MODEL_KEYS)}")  # fmt: skip
        model, tokenizer = load_speech_model(recipe.data.init, **recipe.model)
        if recipe.data.ctc_weight and model.ctc_head is None:
            raise ConfigError(f"data.ctc_weight: {recipe.data.init} has no CTC head; fine-tune it with ctc_weight=0")
        return model.train(), tokenizer, f"{recipe.data.init}'s ({tokenizer.vocab_size} tokens)"
    tokenizer, origin = _tokenizer(recipe, texts)
    ids = dict(vocab_size=tokenizer.vocab_size, sot_id=tokenizer.sot, eos_id=tokenizer.eot, pad_id=tokenizer.eot)
    fields = {key: value for key, value in recipe.model.items() if key != "preset"}
    settings = {"fixed_window": False, **fields, **ids, "ctc_head": recipe.data.ctc_weight > 0}
    try:
        if "preset" in recipe.model:
            model = create_model(recipe.model["preset"], **settings)
            if not isinstance(model, Whisper):
                raise ValueError(f"preset {recipe.model['preset']!r} is not a Whisper model (see `polyformer info`)")
            return model, tokenizer, origin
        return Whisper(WhisperConfig(**settings)), tokenizer, origin
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err


def _prompt(tokenizer: WhisperTokenizer, data: AsrDataSettings) -> list[int]:
    return tokenizer.sot_sequence(data.language, data.task, timestamps=False)


# ----------------------------------------------------------------------------------------------- training
def train_asr(recipe: AsrRecipe, echo: Callable[[str], None] = print) -> tuple[TrainResult, dict[str, Any] | None]:
    """Train (or fine-tune) the recipe's Whisper-style model on the engine; then score the test clips (main process).

    Works unchanged under torchrun. The run directory gets ``recipe.json``, ``tokenizer.json``, the checkpoints,
    ``metrics.jsonl``, ``model/`` and ``best_model/`` (each with ``tokenizer.json``, so that ``speech transcribe``,
    ``speech eval`` and the pipeline load them) and, with test clips, ``test_scores.json`` and
    ``test_transcripts.tsv``.

    Returns:
        The engine's result, and the test scores (None without test clips or off the main process).
    """
    context = init_distributed()
    start = time.perf_counter()
    data = recipe.data
    splits, where = read_asr_data(data)
    seed_everything(recipe.train.seed)
    model, tokenizer, origin = _build_model(recipe, splits["train"].texts)
    cfg = model.config
    prompt = _prompt(tokenizer, data)
    examples = functools.partial(AsrExamples, tokenizer=tokenizer, prompt=prompt, n_mels=cfg.n_mels,
                                 fixed_window=cfg.fixed_window, max_tokens=cfg.max_target_positions,
                                 skip_bad=data.skip_bad)  # fmt: skip
    train_data = examples(splits["train"], speeds=data.speed_perturb)
    eval_data = examples(_limit(splits["validation"], data.eval_limit))
    if data.freeze_encoder:
        model.encoder.requires_grad_(False)
    parameters = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    minutes = sum(train_data.sample_lengths) / 6000
    skipped = len(train_data.skipped) + len(eval_data.skipped)
    summary = [
        f"data: {where}: {len(train_data)} training clips ({minutes:.1f} min), {len(eval_data)} validation clips"
        + (f", {len(splits['test'])} test clips" if "test" in splits else ", no test clips")
        + (f"; {skipped} bad clips or rows skipped" if skipped else ""),
        f"tokenizer: {origin}; prompt {tokenizer.tokenizer.decode(prompt, skip_special_tokens=False)!r}",
        f"model: Whisper-style, {cfg.encoder_layers}+{cfg.decoder_layers} layers, width {cfg.d_model}, "
        f"{cfg.num_heads} heads, {parameters / 1e6:.2f}M parameters"
        + (f" ({trained / 1e6:.2f}M trained, encoder frozen)" if data.freeze_encoder else "")
        + (f"; fine-tuning {data.init}" if data.init else "; from scratch")
        + (f"; joint CTC (weight {data.ctc_weight:g})" if data.ctc_weight else "")
        + ("; SpecAugment" if data.spec_augment else "")
        + (f"; speeds {', '.join(f'{s:g}' for s in data.speed_perturb)}" if data.speed_perturb else ""),
    ]
    augment = None
    if data.spec_augment:
        augment = SpecAugment(data.freq_masks, data.freq_width, data.time_masks, data.time_width)
    ctc_weight = data.ctc_weight if model.ctc_head is not None else 0.0
    if model.ctc_head is not None and not ctc_weight:
        model.ctc_head.requires_grad_(False)  # an unused head would stall DDP
    task = AsrTask(label_smoothing=data.label_smoothing, perplexity=False, pad_id=None, tokenizer=tokenizer,
                   prompt=prompt, spec_augment=augment, max_new_tokens=data.max_new_tokens,
                   ctc_weight=ctc_weight)  # fmt: skip
    collate = functools.partial(collate_asr, pad_id=cfg.pad_id, prompt_length=len(prompt))
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n", TOKENIZER_FILE: tokenizer.tokenizer.to_str()}
    result = train(
        model, task, train_data, recipe.train, eval_data=eval_data, collate_fn=collate, echo=echo,
        run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if not context.is_main:
        return result, None
    for directory in (result.model_dir, result.best_model_dir):
        if directory is not None:
            tokenizer.save(directory / TOKENIZER_FILE)
    scores = None
    if "test" in splits:
        best, _ = load_speech_model(result.best_model_dir or result.model_dir)
        tsv = result.out_dir / "test_transcripts.tsv"
        scores = evaluate_asr(best, tokenizer, splits["test"], language=data.language, task=data.task,
                              precision=recipe.train.precision, tsv=tsv)  # fmt: skip
        (result.out_dir / "test_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    line = f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps"
    if scores is not None:
        line += f"; test WER {scores['wer']:.2%}, CER {scores['cer']:.2%} on {scores['clips']} clips"
    echo(line + f"; model in {result.best_model_dir or result.model_dir}")
    return result, scores


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_asr(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    clips: AudioClips,
    *,
    language: str | None = "en",
    task: str = "transcribe",
    beam_size: int | None = None,
    batch_size: int = 16,
    precision: str = "auto",
    tsv: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Transcribe labelled ``clips`` (greedy, or beam search with ``beam_size``; no timestamps) and score them.

    WER and CER are corpus rates (jiwer) over transcripts normalised by
    :func:`~polyformer.speech.metrics.normalize_transcript` (lower case, punctuation removed, hyphens to spaces,
    title abbreviations spelled out). With ``tsv``, each clip's file, reference, transcription, WER and CER are
    written there (tab-separated, with a header).

    Returns:
        ``{"wer", "cer", "clips", "words", "normalisation"}``.
    """
    if clips.texts is None:
        raise SpeechDataError("scoring needs transcriptions; these clips have none")
    options = DecodingOptions(language=language if tokenizer.multilingual else None, task=task, temperature=(0.0,),
                              beam_size=beam_size, timestamps=False, no_speech_threshold=None)  # fmt: skip
    device = next(model.parameters()).device
    audios = [load_audio(path) for path in clips.paths]
    with torch.no_grad(), autocast(resolve_precision(precision, device), device):
        found = transcribe(model.eval(), tokenizer, audios, options, condition_on_previous_text=False,
                           batch_size=batch_size, progress=progress)  # fmt: skip
    hypotheses = [result.text.strip() for result in found]
    return score_transcripts(clips, hypotheses, tsv)


def score_transcripts(clips: AudioClips, hypotheses: Sequence[str], tsv: str | Path | None = None) -> dict[str, Any]:
    """Corpus WER and CER (jiwer, :data:`NORMALISATION` on both sides) of ``hypotheses`` against the clips'
    transcriptions; with ``tsv``, each clip's file, reference, transcription, WER and CER (tab-separated)."""
    scores = {
        "wer": round(word_error_rate(clips.texts, hypotheses), 4),
        "cer": round(char_error_rate(clips.texts, hypotheses), 4),
        "clips": len(clips),
        "words": sum(len(normalize_transcript(text).split()) for text in clips.texts),
        "normalisation": NORMALISATION,
    }
    if tsv is not None:
        with Path(tsv).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["file", "reference", "transcription", "wer", "cer"])
            for path, reference, hypothesis in zip(clips.paths, clips.texts, hypotheses):
                writer.writerow([str(path), reference, hypothesis, *_clip_rates(reference, hypothesis)])
    return scores


def _clip_rates(reference: str, hypothesis: str) -> list[float | str]:
    """One clip's WER and CER, or blanks where the normalised reference is empty."""
    pair = ([normalize_transcript(reference)], [normalize_transcript(hypothesis)])
    if not pair[0][0]:
        return ["", ""]
    return [round(word_error_rate(*pair, normalize=False), 4), round(char_error_rate(*pair, normalize=False), 4)]
