"""Speech data: readers for audio folders (``metadata.csv``), JSONL manifests and split folders.

The shipped recordings live beside this file: ``librivox/`` (five real LibriVox recordings with their
transcripts), made by ``make_spoken_corpus.py --librivox``; that script also builds a synthetic spoken corpus
(espeak-ng / flite voices, split by voice) for training.
"""

from pathlib import Path

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

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("Path", "readers")]
