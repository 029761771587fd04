"""Clips as CTC training examples: normalised waveforms and character ids (wav2vec 2.0 fine-tuning).

Every clip is checked when the set is built, as for :class:`~polyformer.speech.data.AsrExamples` (a bad one
stops training with its file and line, or with ``skip_bad`` is left out and counted): a file soundfile cannot
read, a clip shorter than the model's receptive field or longer than ``max_seconds``, an empty transcription,
characters outside the vocabulary, or more characters than the clip has frames (CTC cannot emit them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.core.objectives import IGNORE_INDEX

from ..audio import SAMPLE_RATE, normalize_waveform
from .asr import _BadClip, _seconds, _usable, collate_audio, read_at_speed
from .readers import AudioClips, SpeechDataError

__all__ = ["CtcBatch", "CtcExamples", "collate_ctc"]


class CtcBatch(NamedTuple):
    """A padded batch: waveforms (B, N), their mask (B, N) True on real samples, labels (B, T) padded with
    ``IGNORE_INDEX``, and the reference texts."""

    audio: Tensor
    mask: Tensor
    labels: Tensor
    texts: list[str]


class CtcExamples(Dataset):
    """``(waveform (N,), label ids (T,), text)`` for each usable clip; waveforms normalised per clip.

    Args:
        clips: labelled clips (:func:`~polyformer.speech.data.read_audio_dataset`).
        vocabulary: a :class:`~polyformer.speech.wav2vec2.CtcVocabulary` (``encode``, ``unknown_characters``).
        frames_for: the model's frames for a clip of N samples (``Wav2Vec2Config.frames_for``).
        max_seconds: longer clips are refused (memory grows with the square of the length).
        skip_bad: leave bad clips out (listed in ``skipped``) instead of raising :class:`SpeechDataError`.
        speeds: speed perturbation factors for training (see :class:`~polyformer.speech.data.AsrExamples`).
    """

    def __init__(
        self,
        clips: AudioClips,
        vocabulary,
        frames_for: Callable[[int], int],
        max_seconds: float = 30.0,
        skip_bad: bool = False,
        speeds: Sequence[float] = (),
    ):
        if clips.texts is None:
            raise SpeechDataError("CTC training needs transcriptions; these clips have none")
        if any(not 0.5 <= speed <= 2.0 for speed in speeds):
            raise ValueError(f"speed perturbation factors must be within [0.5, 2], got {list(speeds)}")
        self.vocabulary, self.speeds = vocabulary, [float(s) for s in speeds]
        self.paths, self.texts, self.label_ids, self.sample_lengths = [], [], [], []
        self.skipped: list[tuple[str, int, str]] = list(clips.skipped)

        def check(i: int) -> tuple[int, list[int]]:
            return self._check(clips.paths[i], clips.texts[i], frames_for, max_seconds)

        for i, (samples, ids) in _usable(clips, check, skip_bad, self.skipped):
            self.paths.append(clips.paths[i])
            self.texts.append(clips.texts[i])
            self.label_ids.append(ids)
            self.sample_lengths.append(samples)
        if not self.paths:
            raise SpeechDataError(f"no usable clips: all {len(clips)} were bad (the first: {self.skipped[-1][2]})")

    def _check(self, path, text: str, frames_for: Callable[[int], int], max_seconds: float) -> tuple[int, list[int]]:
        name = path.name
        samples = round(_seconds(path) * SAMPLE_RATE)
        frames = frames_for(samples)
        if frames < 1:
            raise _BadClip(f"'{name}' is too short for the model ({samples} samples: less than its receptive field)")
        if samples > max_seconds * SAMPLE_RATE:
            raise _BadClip(f"'{name}' is {samples / SAMPLE_RATE:.1f} s long, more than {max_seconds:g} s; cut it first")
        if not text.strip():
            raise _BadClip(f"the transcription of '{name}' is empty")
        unknown = self.vocabulary.unknown_characters(text)
        if unknown:
            raise _BadClip(
                f"the transcription of '{name}' has characters outside the vocabulary: "
                + ", ".join(repr(c) for c in unknown)
            )
        ids = self.vocabulary.encode(text)
        if len(ids) > frames:
            raise _BadClip(f"the transcription of '{name}' has {len(ids)} characters for {frames} frames of audio")
        return samples, ids

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, str]:
        audio = read_at_speed(self.paths[index], self.speeds)
        return normalize_waveform(audio), torch.tensor(self.label_ids[index]), self.texts[index]


def collate_ctc(samples: Sequence[tuple[Tensor, Tensor, str]]) -> CtcBatch:
    """Zero-pad waveforms (with a mask) and label rows (with ``IGNORE_INDEX``) into a :class:`CtcBatch`."""
    if not samples:
        raise ValueError("an empty batch")
    audio, mask = collate_audio([wave for wave, _, _ in samples])
    most = max(labels.numel() for _, labels, _ in samples)
    labels = torch.full((len(samples), most), IGNORE_INDEX, dtype=torch.long)
    for row, (_, ids, _) in enumerate(samples):
        labels[row, : ids.numel()] = ids
    return CtcBatch(audio, mask, labels, [text for _, _, text in samples])
