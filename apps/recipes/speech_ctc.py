"""CTC speech recognition with wav2vec 2.0, explicitly: read the clips, build or load the model, train, score.

A recipe is data: a TOML config (``apps/recipes/configs/ctc*.toml``) with ``[model]`` (a ``size``: ``tiny``,
``small``, ``base`` or ``large``, and/or :class:`~polyformer.speech.wav2vec2.Wav2Vec2Config` fields for a model
trained from scratch), ``[data]`` (:class:`CtcDataSettings`) and ``[train]`` (the engine's
:class:`~polyformer.apps.engine.TrainingConfig`), changed by ``key=value`` overrides. With ``data.init``
(``polyformer speech train-ctc DATA --init DIR``) the encoder of a pretrained wav2vec 2.0 directory (ours or
Hugging Face's) gets a fresh CTC head for the vocabulary of the transcriptions; ``[model]`` may then only change
dropouts and masking.

The vocabulary is built from the training transcriptions (characters; ``|`` for a space; ``<pad>`` is the blank)
and saved as ``vocab.json`` beside every model of the run. Training is CTC (:class:`~polyformer.apps.engine.CTCTask`)
with span masking of the features (``model.mask_time_prob``, SpecAugment-like) and optional speed perturbation;
every validation decodes greedily and reports WER and CER (the lowest ``wer`` picks ``best_model/``) and warns
when every clip still decodes to blanks. At the end the best model transcribes the test clips:
``test_scores.json`` and ``test_transcripts.tsv``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from polyformer.apps.engine import (
    CTCTask,
    TrainingConfig,
    TrainResult,
    autocast,
    init_distributed,
    resolve_checkpoint,
    resolve_precision,
    run_of,
    seed_everything,
    train,
    unwrap_model,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.speech_asr import read_asr_data, score_transcripts
from polyformer.apps.recipes.typed_config import ConfigError, check_fields
from polyformer.speech.audio import load_audio
from polyformer.speech.data import AudioClips, CtcBatch, CtcExamples, SpeechDataError, collate_ctc
from polyformer.speech.metrics import normalize_transcript
from polyformer.speech.wav2vec2 import CtcVocabulary, Wav2Vec2Config, Wav2Vec2ForCTC
from polyformer.speech.wav2vec2.config import sized_config
from polyformer.speech.wav2vec2.pretrained import load_wav2vec2_backbone, load_wav2vec2_ctc
from polyformer.speech.wav2vec2.transcribe import transcribe_ctc
from polyformer.speech.wav2vec2.vocabulary import VOCAB_FILE

__all__ = ["CtcDataSettings", "CtcRecipe", "SpeechCtcTask", "evaluate_ctc", "load_ctc_recipe", "train_ctc"]

FROM_VOCABULARY = ("vocab_size", "blank_id")
INIT_MODEL_KEYS = ("dropout", "attention_dropout", "feature_dropout", "layer_drop", "mask_time_prob",
                   "mask_time_length", "mask_time_min_spans")  # fmt: skip


@dataclass
class CtcDataSettings:
    """Where the clips come from, augmentation, the model to start from and the health checks."""

    train: str = "spoken"  # "spoken" (the embedded corpus) or a folder (metadata.csv, or train/ test/ splits), .jsonl
    eval: str = ""  # validation clips; "" = the data's validation/ split, else 5% of the training clips held out
    test: str = ""  # test clips; "" = the data's test/ split (none if it has none)
    skip_bad: bool = False  # leave out bad clips and rows (counted) instead of stopping
    eval_limit: int = 0  # validation clips decoded at each evaluation; 0 = all
    label_fraction: float = 1.0  # train on the first fraction of the labelled training clips (e.g. 0.1); the
    # vocabulary still has every character of the training transcriptions (the alphabet is known, not the labels)
    init: str = ""  # a pretrained wav2vec 2.0 directory (ours or Hugging Face's) or run; "" = from scratch
    freeze_feature_encoder: bool = True  # with init: keep the conv feature encoder as pretrained
    speed_perturb: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]
    max_seconds: float = 30.0  # longer clips are refused
    warn_blank_after: int = 0  # from this step on an all-blank validation is warned about; 0 = 20% of the run
    stop_when_blank: bool = False  # stop the run instead of warning

    def __post_init__(self) -> None:
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"data.label_fraction must be in (0, 1], got {self.label_fraction}")
        if any(not 0.5 <= speed <= 2.0 for speed in self.speed_perturb):
            raise ValueError(f"data.speed_perturb factors must be within [0.5, 2], got {self.speed_perturb}")
        if self.max_seconds <= 0 or min(self.eval_limit, self.warn_blank_after) < 0:
            raise ValueError("data.max_seconds must be positive, data.eval_limit and data.warn_blank_after >= 0")


@dataclass
class CtcRecipe:
    """A full CTC speech-recognition recipe."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    data: CtcDataSettings = field(default_factory=CtcDataSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_ctc_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> CtcRecipe:
    """Read a CTC recipe config (shipped name or TOML path) with ``key=value`` overrides.

    Raises:
        FileNotFoundError: no such config.
        ConfigError: unknown sections or fields, or invalid values (the message names them).
    """

    def check_model(table: dict) -> dict:
        return check_fields(Wav2Vec2Config, table, "model", extra={"size": str})

    derived = dict.fromkeys(FROM_VOCABULARY, "the vocabulary of the transcriptions")
    return load_recipe_file(CtcRecipe, name_or_path, overrides, check_model=check_model, derived=derived)


# ----------------------------------------------------------------------------------------------- task
@dataclass
class SpeechCtcTask(CTCTask):
    """The engine's CTC task on :class:`~polyformer.speech.data.CtcBatch` batches, with WER and CER in validation."""

    default_best: ClassVar[tuple[str, str]] = ("wer", "min")
    vocabulary: CtcVocabulary | None = None
    mask_time: bool = True  # span-mask the features in training (the model's mask_time_prob)

    def logits(self, model: nn.Module, batch: CtcBatch) -> tuple[Tensor, Tensor]:
        time_mask = None
        config = unwrap_model(model).config
        if model.training and self.mask_time and config.mask_time_prob > 0:
            from polyformer.speech.wav2vec2 import span_mask

            inner = unwrap_model(model).wav2vec2
            lengths = inner.frame_lengths(batch.mask.sum(dim=1))
            frames = config.frames_for(batch.audio.shape[1])
            time_mask = span_mask(lengths, frames, config.mask_time_prob, config.mask_time_length,
                                  config.mask_time_min_spans)  # fmt: skip
        return model(batch.audio, batch.mask, time_mask)

    def make_metrics(self) -> dict:
        from torchmetrics.text import CharErrorRate, WordErrorRate

        return {**super().make_metrics(), "wer": WordErrorRate(), "cer": CharErrorRate()}

    def update_text_metrics(self, metrics: dict, decoded: list[list[int]], batch: CtcBatch) -> None:
        hypotheses = [normalize_transcript(self.vocabulary.decode(ids)) for ids in decoded]
        references = [normalize_transcript(text) for text in batch.texts]
        metrics["wer"].update(hypotheses, references)
        metrics["cer"].update(hypotheses, references)


# ----------------------------------------------------------------------------------------------- model
def _vocabulary(recipe: CtcRecipe, texts: Sequence[str]) -> tuple[CtcVocabulary, str]:
    """The resumed run's vocabulary, else one built from ``texts``; and where from."""
    if recipe.train.resume:
        saved = run_of(resolve_checkpoint(recipe.train.resume)) / VOCAB_FILE
        if saved.is_file():
            return CtcVocabulary.load(saved), f"the resumed run's ({saved})"
    vocabulary = CtcVocabulary.build(texts)
    return vocabulary, f"{len(vocabulary)} tokens (characters of the training transcriptions, <pad> = blank)"


def _build_model(recipe: CtcRecipe, vocabulary: CtcVocabulary) -> tuple[Wav2Vec2ForCTC, str]:
    ids = dict(vocab_size=len(vocabulary), blank_id=vocabulary.blank)
    fields = {key: value for key, value in recipe.model.items() if key != "size"}
    if recipe.data.init:
        extra = sorted(set(recipe.model) - {"size", *INIT_MODEL_KEYS})  # the size is the pretrained model's
        if extra:
            raise ConfigError(f"model.{extra[0]}: a pretrained encoder keeps its architecture; [model] may only set "
                              f"{', '.join(INIT_MODEL_KEYS)}")  # fmt: skip
        from polyformer.apps.pipelines import resolve_model_dir

        source = Path(recipe.data.init)
        if not (source / "config.json").is_file():
            source = resolve_model_dir(source, "automatic-speech-recognition")
        backbone = load_wav2vec2_backbone(source)
        model = Wav2Vec2ForCTC(backbone.config.replace(**fields, **ids))
        model.wav2vec2.load_weights(backbone.state_dict(), source=str(source))
        if recipe.data.freeze_feature_encoder:
            model.wav2vec2.feature_encoder.requires_grad_(False)
        return model.train(), f"pretrained encoder from {recipe.data.init}, a new CTC head"
    size = recipe.model.get("size", "small")
    try:
        return Wav2Vec2ForCTC(sized_config(size, **fields, **ids)), f"size {size}, from scratch"
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err


# ----------------------------------------------------------------------------------------------- training
def train_ctc(recipe: CtcRecipe, echo: Callable[[str], None] = print) -> tuple[TrainResult, dict[str, Any] | None]:
    """Train a wav2vec 2.0 CTC model (from scratch or on a pretrained encoder) on the engine; then score the test
    clips (main process). The run directory gets ``recipe.json``, ``vocab.json``, the checkpoints, ``model/`` and
    ``best_model/`` (each with ``vocab.json``) and, with test clips, ``test_scores.json`` and
    ``test_transcripts.tsv``.

    Returns:
        The engine's result, and the test scores (None without test clips or off the main process).
    """
    context = init_distributed()
    start = time.perf_counter()
    data = recipe.data
    splits, where = read_asr_data(data)
    train_clips = splits["train"]
    vocabulary, origin = _vocabulary(recipe, train_clips.texts)  # all clips' alphabet, whatever the label fraction
    if data.label_fraction < 1.0:
        train_clips = train_clips.select(range(max(2, round(len(train_clips) * data.label_fraction))))
    seed_everything(recipe.train.seed)
    model, described = _build_model(recipe, vocabulary)
    cfg = model.config
    examples = functools.partial(CtcExamples, vocabulary=vocabulary, frames_for=cfg.frames_for,
                                 max_seconds=data.max_seconds, skip_bad=data.skip_bad)  # fmt: skip
    train_data = examples(train_clips, speeds=data.speed_perturb)
    validation = splits["validation"]
    eval_data = examples(validation if not data.eval_limit else validation.select(range(min(data.eval_limit,
                                                                                             len(validation)))))
    parameters = sum(p.numel() for p in model.parameters())
    minutes = sum(train_data.sample_lengths) / 16000 / 60
    skipped = len(train_data.skipped) + len(eval_data.skipped)
    summary = [
        f"data: {where}: {len(train_data)} training clips ({minutes:.1f} min"
        + (f", {data.label_fraction:.0%} of the labels" if data.label_fraction < 1 else "")
        + f"), {len(eval_data)} validation clips"
        + (f", {len(splits['test'])} test clips" if "test" in splits else ", no test clips")
        + (f"; {skipped} bad clips or rows skipped" if skipped else ""),
        f"vocabulary: {origin}",
        f"model: wav2vec 2.0 CTC, {cfg.encoder_layers} layers, width {cfg.d_model}, {cfg.num_heads} heads, "
        f"{parameters / 1e6:.2f}M parameters; {described}"
        + ("; feature encoder frozen" if data.init and data.freeze_feature_encoder else "")
        + (f"; span masking p={cfg.mask_time_prob:g} x {cfg.mask_time_length} frames" if cfg.mask_time_prob else "")
        + (f"; speeds {', '.join(f'{s:g}' for s in data.speed_perturb)}" if data.speed_perturb else ""),
    ]
    steps = recipe.train.max_steps or round(recipe.train.epochs * len(train_data) / recipe.train.batch_size)
    task = SpeechCtcTask(blank=vocabulary.blank, warn=echo if context.is_main else None,
                         warn_after=data.warn_blank_after or max(1, steps // 5), stop_when_blank=data.stop_when_blank,
                         vocabulary=vocabulary)  # fmt: skip
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n",
             VOCAB_FILE: json.dumps(vocabulary.ids, ensure_ascii=False, indent=1) + "\n"}  # fmt: skip
    result = train(
        model, task, train_data, recipe.train, eval_data=eval_data, collate_fn=collate_ctc, echo=echo,
        run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if not context.is_main:
        return result, None
    for directory in (result.model_dir, result.best_model_dir):
        if directory is not None:
            vocabulary.save(directory)
    scores = None
    if "test" in splits:
        best, _ = load_wav2vec2_ctc(result.best_model_dir or result.model_dir)
        tsv = result.out_dir / "test_transcripts.tsv"
        scores = evaluate_ctc(best, vocabulary, splits["test"], precision=recipe.train.precision, tsv=tsv)
        (result.out_dir / "test_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    line = f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps"
    if scores is not None:
        line += f"; test WER {scores['wer']:.2%}, CER {scores['cer']:.2%} on {scores['clips']} clips"
    echo(line + f"; model in {result.best_model_dir or result.model_dir}")
    return result, scores


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_ctc(
    model: Wav2Vec2ForCTC,
    vocabulary: CtcVocabulary,
    clips: AudioClips,
    *,
    batch_size: int = 8,
    precision: str = "auto",
    tsv: str | Path | None = None,
    beam_size: int = 1,
) -> dict[str, Any]:
    """Transcribe labelled ``clips`` (greedily, or by CTC beam search with ``beam_size`` > 1) and score them (WER
    and CER with jiwer, normalised text); ``tsv`` gets each clip's file, reference, transcription, WER and CER."""
    if clips.texts is None:
        raise SpeechDataError("scoring needs transcriptions; these clips have none")
    device = next(model.parameters()).device
    with autocast(resolve_precision(precision, device), device):
        hypotheses = transcribe_ctc(model, vocabulary, [load_audio(p) for p in clips.paths], batch_size,
                                   beam_size=beam_size)
    return score_transcripts(clips, hypotheses, tsv)
