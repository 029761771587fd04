"""Speech data: readers for audio folders (``metadata.csv``), JSONL manifests and split folders, and
training examples for Whisper-style models (:class:`AsrExamples`, :func:`collate_asr`), for CTC models
(:class:`CtcExamples`, :func:`collate_ctc`) and waveform crops of unlabelled audio for pretraining
(:class:`AudioCrops`, :func:`collate_audio`).

The shipped recordings live beside this file, both made by ``make_spoken_corpus.py``: ``spoken_corpus/``
(English sentences spoken by espeak-ng and flite voices; ``test/`` holds only voices never heard in
``train/`` or ``validation/``) and ``librivox/`` (five real LibriVox recordings with their transcripts).
"""

from pathlib import Path

from .asr import AsrBatch, AsrExamples, AudioCrops, collate_asr, collate_audio
from .ctc import CtcBatch, CtcExamples, collate_ctc
from .readers import (
    METADATA_FILE,
    SPLIT_NAMES,
    TRANSCRIPTION_COLUMNS,
    AudioClips,
    SpeechDataError,
    check_audio_files,
    read_audio_dataset,
    read_audio_splits,
)

LIBRIVOX_DIR = Path(__file__).resolve().parent / "librivox"
SPOKEN_CORPUS_DIR = Path(__file__).resolve().parent / "spoken_corpus"

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("Path", "readers", "asr", "ctc")]
