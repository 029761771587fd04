"""``polyformer speech transcribe|models`` and the automatic-speech-recognition pipeline, with real
OpenAI Whisper base (the PyPI wheels) on the shipped LibriVox clips."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from polyformer.apps.cli import main
from polyformer.apps.pipelines import pipeline
from polyformer.speech.audio import load_audio
from polyformer.speech.metrics import word_error_rate
from polyformer.speech.whisper.pretrained import whisper_base_files

LIBRIVOX = Path(__file__).resolve().parents[2] / "speech" / "data" / "librivox"
pytestmark = pytest.mark.skipif(whisper_base_files() is None, reason="the Whisper base wheels are not installed")


def references() -> dict[str, str]:
    with open(LIBRIVOX / "metadata.csv", newline="") as f:
        return {row["file_name"]: row["transcription"] for row in csv.DictReader(f)}


def clip(name_part: str) -> Path:
    return next(path for path in sorted(LIBRIVOX.glob("*.flac")) if name_part in path.name)


def test_transcribe_writes_every_format_and_prints_segments(tmp_path):
    files = [clip("0880"), clip("0930")]
    result = CliRunner().invoke(main, ["speech", "transcribe", *map(str, files), "--output-dir", str(tmp_path / "out"),
                                       "--language", "en"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"\[00:00\.000 --> 00:0\d\.\d{3}\] He was not an ill-disposed young man\.", result.output)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{f.stem}.{ext}" for f in files for ext in ("txt", "json", "srt", "vtt", "tsv"))
    texts = [(tmp_path / "out" / f"{f.stem}.txt").read_text() for f in files]
    assert word_error_rate([references()[f.name] for f in files], texts) < 0.1
    srt = (tmp_path / "out" / f"{files[0].stem}.srt").read_text()
    assert re.match(r"1\n00:00:00,000 --> 00:00:0\d,\d{3}\n\S", srt)
    assert (tmp_path / "out" / f"{files[0].stem}.vtt").read_text().startswith("WEBVTT\n\n00:00.000 --> ")
    data = json.loads((tmp_path / "out" / f"{files[0].stem}.json").read_text())
    assert data["language"] == "en" and data["segments"][0]["start"] == 0.0


def test_one_format_without_timestamps_and_word_timestamps_need_timestamps(tmp_path):
    args = ["speech", "transcribe", str(clip("0930")), "--output-format", "txt", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--no-timestamps", "--beam-size", "2", "--temperature", "0"])
    assert result.exit_code == 0, result.output
    assert [p.suffix for p in tmp_path.iterdir()] == [".txt"] and "-->" not in result.output
    result = CliRunner().invoke(main, [*args, "--no-timestamps", "--word-timestamps"])
    assert result.exit_code == 1 and "--word-timestamps needs --timestamps" in result.output


@pytest.mark.parametrize("kind", ["corrupt", "empty", "zero-length", "wrong-extension"])
def test_bad_audio_is_one_clear_line_or_skipped_and_counted(tmp_path, kind):
    bad = tmp_path / ("clip.mp3" if kind == "wrong-extension" else "clip.wav")
    if kind == "corrupt":
        bad.write_bytes(b"RIFF\x00\x00not a wave file")
    elif kind == "empty":
        soundfile.write(bad, np.zeros(0, dtype=np.float32), 16_000)
    elif kind == "zero-length":
        bad.write_bytes(b"")
    else:
        bad.write_text("this is text, not audio")
    result = CliRunner().invoke(main, ["speech", "transcribe", str(bad)])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}: ") and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["speech", "transcribe", str(bad), str(clip("0880")), "--skip-bad",
                                       "--language", "en", "--no-timestamps"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 1 of 2 files" in result.output and "ill-disposed young man" in result.output


def test_missing_model_and_other_model_family_are_clear(tmp_path):
    audio = str(clip("0880"))
    result = CliRunner().invoke(main, ["speech", "transcribe", audio, "--model", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "not a Whisper model directory" in result.output
    vit = Path(__file__).resolve().parents[2] / "apps" / "checkpoints" / "vit_fashion_mnist"
    result = CliRunner().invoke(main, ["speech", "transcribe", audio, "--model", str(vit)])
    assert result.exit_code == 1 and "holds an image classifier (ViT), but automatic-speech" in result.output
    result = CliRunner().invoke(main, ["speech", "transcribe", audio, "--language", "klingon"])
    assert result.exit_code == 1 and "unknown language 'klingon'" in result.output


def test_models_command_says_where_whisper_base_is():
    result = CliRunner().invoke(main, ["speech", "models"])
    assert result.exit_code == 0
    assert "whisper-base: OpenAI Whisper base" in result.output and "model.bin.part2" in result.output


def test_asr_pipeline_takes_paths_and_arrays_with_timestamps():
    asr = pipeline("automatic-speech-recognition", language="en", device="cpu", batch_size=2)
    path = clip("0880")
    by_path = asr(str(path))
    by_array = asr([load_audio(path).numpy()], return_timestamps=True)[0]
    assert by_path["text"] == by_array["text"] and by_path["language"] == "en"
    assert word_error_rate([references()[path.name]], [by_path["text"]]) < 0.1
    (start, end), text = by_array["chunks"][0]["timestamp"], by_array["chunks"][0]["text"]
    assert start == 0.0 and 2.0 < end < 4.0 and "young man" in text
    with pytest.raises(ValueError, match="unknown option 'num_beams'; it accepts: .*beam_size"):
        pipeline("automatic-speech-recognition", num_beams=2)
    with pytest.raises(ValueError, match="1-D 16 kHz mono"):
        asr(np.zeros((2, 100), dtype=np.float32))


def test_demo_prints_whisper_next_to_the_reference_and_the_wer():
    from polyformer.apps.demos.speech import run_speech_demo

    lines = []
    wer = run_speech_demo(lines.append)
    assert lines[0].startswith("[speech] OpenAI Whisper base") and wer is not None and wer < 0.1
    assert sum(line.strip().startswith("whisper:") for line in lines) == 2 and lines[-1].startswith("  WER ")
