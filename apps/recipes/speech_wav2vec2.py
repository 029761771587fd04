"""Self-supervised wav2vec 2.0 pretraining on unlabelled audio, with a health monitor.

A recipe is data: a TOML config (``apps/recipes/configs/wav2vec2_pretrain.toml``) with ``[model]`` (a ``size``
and/or :class:`~polyformer.speech.wav2vec2.Wav2Vec2Config` fields), ``[data]`` (:class:`PretrainDataSettings`),
``[health]`` (:class:`HealthSettings`) and ``[train]`` (the engine's
:class:`~polyformer.apps.engine.TrainingConfig`), changed by ``key=value`` overrides.

Each step masks spans of every clip's frames (:func:`~polyformer.speech.wav2vec2.span_mask`), draws K distractors
per masked frame from the clip's other masked frames, and minimises the contrastive loss plus the weighted
diversity loss (:class:`~polyformer.speech.wav2vec2.Wav2Vec2ForPreTraining`); the Gumbel temperature falls
geometrically from ``data.temperature_start`` to ``data.temperature_end`` over the run, and the conv feature
encoder's gradient is scaled by ``data.feature_grad_scale`` (fairseq: 0.1). Every step logs ``contrastive``,
``diversity``, ``accuracy`` (masked frames whose true target scores highest), ``perplexity`` and
``code_perplexity`` (of the hard codes: the codebook use) with the loss and gradient norm; the
:class:`~polyformer.apps.engine.HealthMonitor` warns (or stops) on codebook collapse, a gradient norm out of
its band and a masked-prediction accuracy stuck at chance. Validation reports the same numbers on fixed masks.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyformer.apps.engine import (
    HealthMonitor,
    HealthRule,
    TrainingConfig,
    TrainResult,
    default_run_directory,
    init_distributed,
    seed_everything,
    train,
    unwrap_model,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.speech_asr import EMBEDDED_DATA
from polyformer.apps.recipes.typed_config import ConfigError, check_fields
from polyformer.speech.audio import normalize_waveform
from polyformer.speech.data import AudioClips, AudioCrops, collate_audio, read_audio_dataset, read_audio_splits
from polyformer.speech.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForPreTraining, sample_negatives, span_mask
from polyformer.speech.wav2vec2.config import sized_config

__all__ = ["HealthSettings", "PretrainDataSettings", "PretrainRecipe", "Wav2Vec2PretrainTask",
           "load_pretrain_recipe", "pretrain_wav2vec2"]  # fmt: skip


@dataclass
class PretrainDataSettings:
    """Which audio, how it is cut, and the pretraining task's schedule."""

    train: str = "spoken"  # "spoken" (the embedded corpus' audio) or any audio folder or .jsonl (labels ignored)
    extra: list[str] = field(default_factory=list)  # more audio folders to pretrain on
    eval: str = ""  # validation audio; "" = the data's validation/ split, else 5% of the clips held out
    skip_bad: bool = False
    max_seconds: float = 15.0  # longer clips are cut to a random window of this length each time they are read
    min_seconds: float = 0.5  # shorter clips are left out (counted) or, without skip_bad, an error
    temperature_start: float = 2.0  # Gumbel softmax temperature at the start ...
    temperature_end: float = 0.5  # ... and at the end of the run (geometric in between)
    feature_grad_scale: float = 0.1  # gradient multiplier of the conv feature encoder

    def __post_init__(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < data.min_seconds <= data.max_seconds, got {self.min_seconds} and "
                             f"{self.max_seconds}")  # fmt: skip
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError("need 0 < data.temperature_end <= data.temperature_start")
        if not 0 < self.feature_grad_scale <= 1:
            raise ValueError(f"data.feature_grad_scale must be in (0, 1], got {self.feature_grad_scale}")


@dataclass
class HealthSettings:
    """The pretraining health monitor's bands (see :class:`~polyformer.apps.engine.HealthMonitor`)."""

    code_perplexity_floor: float = 0.0  # codebook collapse below this; 0 = 2 entries per codebook (2 x G)
    grad_norm_max: float = 50.0  # gradient norm (before clipping) above this: unstable
    grad_norm_min: float = 1e-4  # below this: nothing is learnt
    accuracy_floor: float = 0.0  # masked-prediction accuracy below this after warmup; 0 = chance, 1 / (K + 1)
    after_fraction: float = 0.1  # rules are checked from this fraction of the run on
    stop: bool = False  # stop the run on a collapse instead of warning (one process only)

    def __post_init__(self) -> None:
        if not 0 <= self.after_fraction < 1:
            raise ValueError(f"health.after_fraction must be in [0, 1), got {self.after_fraction}")
        if not 0 <= self.grad_norm_min < self.grad_norm_max:
            raise ValueError("need 0 <= health.grad_norm_min < health.grad_norm_max")


@dataclass
class PretrainRecipe:
    """A full wav2vec 2.0 pretraining recipe."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    data: PretrainDataSettings = field(default_factory=PretrainDataSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


def load_pretrain_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> PretrainRecipe:
    """Read a wav2vec 2.0 pretraining recipe config (shipped name or TOML path) with ``key=value`` overrides.

    Raises:
        FileNotFoundError: no such config.
        ConfigError: unknown sections or fields, or invalid values (the message names them).
    """

    def check_model(table: dict) -> dict:
        return check_fields(Wav2Vec2Config, table, "model", extra={"size": str})

    derived = {"vocab_size": "fine-tuning (speech train-ctc); a pretrained model has no CTC head"}
    return load_recipe_file(PretrainRecipe, name_or_path, overrides, check_model=check_model, derived=derived)


# ----------------------------------------------------------------------------------------------- task
@dataclass
class Wav2Vec2PretrainTask:
    """The contrastive task on ``(audio (B, N), mask (B, N))`` batches; see the module docstring.

    Args:
        total_steps: the run's optimizer steps (for the temperature schedule).
        temperature_start, temperature_end: the Gumbel temperature's schedule.
        step: optimizer steps already done (the engine sets it at the start: a resumed run's).
    """

    default_best: ClassVar[tuple[str, str]] = ("loss", "min")
    total_steps: int
    temperature_start: float = 2.0
    temperature_end: float = 0.5
    step: int = 0

    def __post_init__(self) -> None:
        self._values: dict[str, float] = {}

    def temperature(self, step: int) -> float:
        progress = min(max(step / max(self.total_steps, 1), 0.0), 1.0)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** progress

    def _run(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None):
        audio, mask = batch
        inner = unwrap_model(model)
        config = inner.config
        lengths = inner.wav2vec2.frame_lengths(mask.sum(dim=1))
        frames = config.frames_for(audio.shape[1])
        time_mask = span_mask(lengths, frames, config.mask_time_prob, config.mask_time_length,
                              config.mask_time_min_spans, generator=generator)  # fmt: skip
        negatives = sample_negatives(time_mask, config.num_negatives, generator=generator)
        return model(audio, mask, time_mask, negatives)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        inner = unwrap_model(model)
        inner.quantizer.temperature = self.temperature(self.step)
        out = self._run(model, batch)
        numbers = {"contrastive": out.contrastive_loss, "diversity": out.diversity_loss, "accuracy": out.accuracy,
                   "perplexity": out.perplexity, "code_perplexity": out.code_perplexity}  # fmt: skip
        self._values = {name: float(value.detach()) for name, value in numbers.items()}
        self._values["temperature"] = inner.quantizer.temperature
        return out.loss

    def on_start(self, step: int) -> None:
        self.step = step

    def step_values(self) -> dict[str, float]:
        self.step += 1
        return dict(self._values)

    def make_metrics(self) -> dict:
        from torchmetrics import MeanMetric

        return {name: MeanMetric() for name in ("loss", "contrastive", "accuracy", "code_perplexity")}

    def update_metrics(self, metrics: dict, model: nn.Module, batch: Any) -> None:
        generator = torch.Generator().manual_seed(int(batch[1].sum()))  # the same masks at every validation
        out = self._run(model, batch, generator)
        metrics["loss"].update(out.loss.detach().float())
        metrics["contrastive"].update(out.contrastive_loss.detach().float())
        metrics["accuracy"].update(out.accuracy.detach().float())
        metrics["code_perplexity"].update(out.code_perplexity.detach().float())


class NormalizedCrops(AudioCrops):
    """:class:`~polyformer.speech.data.AudioCrops` with each crop normalised (zero mean, unit variance)."""

    def __getitem__(self, index: int) -> Tensor:
        return normalize_waveform(super().__getitem__(index))


# ----------------------------------------------------------------------------------------------- data and model
def _audio(path: str, skip_bad: bool) -> dict[str, AudioClips]:
    source = EMBEDDED_DATA.get(path, Path(path))
    if (Path(source) / "train").is_dir():
        return read_audio_splits(source, labelled=False, skip_bad=skip_bad)
    return {"train": read_audio_dataset(source, labelled=False, skip_bad=skip_bad)}


def _concat(parts: Sequence[AudioClips]) -> AudioClips:
    """One :class:`AudioClips` of several (labels dropped)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    return AudioClips(paths=[p for part in parts for p in part.paths], texts=None,
                      skipped=[s for part in parts for s in part.skipped])  # fmt: skip


def _build_model(recipe: PretrainRecipe) -> Wav2Vec2ForPreTraining:
    fields = {key: value for key, value in recipe.model.items() if key != "size"}
    try:
        model = Wav2Vec2ForPreTraining(sized_config(recipe.model.get("size", "small"), **fields))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from err
    model.wav2vec2.feature_grad_scale = recipe.data.feature_grad_scale
    return model


def health_rules(settings: HealthSettings, config: Wav2Vec2Config, total_steps: int, stop: bool) -> list[HealthRule]:
    """The monitor's bands for a run of ``total_steps`` steps."""
    after = max(1, round(settings.after_fraction * total_steps))
    floor = settings.code_perplexity_floor or 2.0 * config.quantizer_groups
    chance = settings.accuracy_floor or 1.0 / (config.num_negatives + 1)
    return [
        HealthRule("code_perplexity", low=floor, after=after, stop=stop, advice=(
            "codebook collapse (the quantiser uses almost no entries, so the contrastive task is trivial): raise "
            "data.temperature_start, model.diversity_weight or the number of masked frames, or lower train.lr")),
        HealthRule("grad_norm", low=settings.grad_norm_min, high=settings.grad_norm_max, after=after, advice=(
            "the gradient norm left its band: too high means unstable training (lower train.lr, raise warmup, "
            "lower data.feature_grad_scale), too low that nothing is learnt (raise train.lr)")),
        HealthRule("accuracy", low=chance * 1.5, after=max(after, total_steps // 2), advice=(
            "masked frames are predicted at chance level halfway through: check the audio (silence, a wrong "
            "sample rate), raise train.lr or train longer")),
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------- training
def pretrain_wav2vec2(recipe: PretrainRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Pretrain a wav2vec 2.0 model on unlabelled audio on the engine, with the health monitor.

    The run directory gets ``recipe.json``, the checkpoints, ``metrics.jsonl`` (with ``health`` events),
    ``model/`` and ``best_model/`` (lowest validation loss): ``speech train-ctc DATA --init RUN`` fine-tunes it.
    """
    context = init_distributed()
    start = time.perf_counter()
    data = recipe.data
    found = _audio(data.train, data.skip_bad)
    clips = _concat([found["train"], *(_audio(extra, data.skip_bad)["train"] for extra in data.extra)])
    if data.eval:
        held = _audio(data.eval, data.skip_bad)["train"]
    elif "validation" in found:
        held = found["validation"]
    else:
        count = max(1, len(clips) // 20)
        clips, held = clips.select(range(len(clips) - count)), clips.select(range(len(clips) - count, len(clips)))
    seed_everything(recipe.train.seed)
    model = _build_model(recipe)
    cfg = model.config
    crops = {"max_seconds": data.max_seconds, "min_seconds": data.min_seconds, "skip_bad": data.skip_bad}
    train_data, eval_data = NormalizedCrops(clips, **crops), NormalizedCrops(held, **crops)
    total = recipe.train.max_steps or max(1, math.ceil(recipe.train.epochs * len(train_data) / recipe.train.batch_size))
    task = Wav2Vec2PretrainTask(total, data.temperature_start, data.temperature_end)  # the engine gives it the step
    hours = sum(train_data.sample_lengths) / 16000 / 3600
    parameters = sum(p.numel() for p in model.parameters())
    summary = [
        f"data: {len(train_data)} training clips ({hours:.2f} h, crops of at most {data.max_seconds:g} s), "
        f"{len(eval_data)} validation clips"
        + (f"; {len(train_data.skipped) + len(eval_data.skipped)} bad or short clips skipped"
           if train_data.skipped or eval_data.skipped else ""),  # fmt: skip
        f"model: wav2vec 2.0, {cfg.encoder_layers} layers, width {cfg.d_model}, {cfg.num_heads} heads, "
        f"{parameters / 1e6:.2f}M parameters; quantiser {cfg.quantizer_groups} x {cfg.quantizer_entries}, "
        f"{cfg.num_negatives} distractors, masking p={cfg.mask_time_prob:g} x {cfg.mask_time_length} frames; "
        f"Gumbel temperature {data.temperature_start:g} -> {data.temperature_end:g}; "
        f"feature encoder gradient x {data.feature_grad_scale:g}",
    ]
    stop = recipe.health.stop and context.world_size == 1  # one process may not stop alone under DDP
    if recipe.train.out_dir is None and context.world_size == 1:  # known now, so that health events can be logged
        recipe.train.out_dir = str(default_run_directory(recipe.name))
    out = Path(recipe.train.out_dir) if recipe.train.out_dir else None
    log_path = out / "metrics.jsonl" if out is not None and context.is_main else None
    monitor = HealthMonitor(health_rules(recipe.health, cfg, total, stop), warn=echo if context.is_main else None,
                            log_path=log_path)  # fmt: skip
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n"}
    result = train(
        model, task, train_data, recipe.train, eval_data=eval_data, collate_fn=collate_audio, echo=echo,
        on_step_end=monitor, run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:
        echo(f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps; model in "
             f"{result.best_model_dir or result.model_dir} (fine-tune: polyformer speech train-ctc DATA --init "
             f"{result.out_dir})")  # fmt: skip
    return result
