"""Clips as training examples: log-mel features and target tokens for a Whisper-style model, waveform crops for
self-supervised pretraining.

:class:`AsrExamples` turns :class:`~polyformer.speech.data.AudioClips` into ``(features (M, F), tokens)``
pairs. Every clip is checked when the set is built, so that a bad one stops training before it starts
(or, with ``skip_bad``, is left out and counted in :attr:`AsrExamples.skipped` as ``(file, line, reason)``):
a file soundfile cannot read, a clip longer than the model's window, an empty transcription, one with
characters the tokenizer cannot encode, or one with more tokens than the decoder takes. Audio is decoded
when an example is read, so a large corpus does not have to fit in memory.

Features are computed as :func:`~polyformer.speech.whisper.transcribe` computes them at inference: the
clip's log-mel spectrogram with silence after it. A model with a fixed window (OpenAI's checkpoints) gets
30 s of frames; one without gets the clip plus a few frames of silence, and :func:`collate_asr` pads the
shorter clips of a batch with their own silence frames (under Whisper's normalisation silence is a
constant per clip, its last frame), so padding looks exactly like the silence at inference.

For self-supervised pretraining on unlabelled audio, :class:`AudioCrops` gives waveforms, long clips cut
to a random window, and :func:`collate_audio` pads them with a mask.

Targets are the decoder prompt (``<|startoftranscript|>`` [language task] ``<|notimestamps|>``), the
transcription (with a leading space for a byte-level vocabulary, as Whisper's) and ``<|endoftext|>``; only the
transcription and the end token are predicted (the prompt's labels are ignored).

Shape legend: B batch, M mel bins, F frames (100 per second), T tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import soundfile
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.core.objectives import IGNORE_INDEX

from ..audio import (
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    load_audio,
    log_mel_spectrogram,
    resample,
)
from .readers import AudioClips, SpeechDataError

__all__ = ["AsrBatch", "AsrExamples", "AudioCrops", "collate_asr", "collate_audio", "silence_margin_frames"]

#: Frames of silence kept after a clip for a model without a fixed window (as transcription gives it).
SILENCE_FRAMES = 4
#: Extra samples of silence the features are computed with, so that the last kept frame is pure silence.
_SILENCE_SAMPLES = (SILENCE_FRAMES + 4) * HOP_LENGTH


def silence_margin_frames(content_frames: int) -> int:
    """Frames a windowless model sees for ``content_frames`` of audio: a little silence after it, an even count."""
    frames = content_frames + SILENCE_FRAMES
    return min(N_FRAMES, frames + frames % 2)


class _BadClip(Exception):
    """Why one clip cannot be a training example."""


def _seconds(path) -> float:
    """The clip's length from its header (0.0 when it holds no samples); an unreadable file is a :class:`_BadClip`."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as err:
        raise _BadClip(f"'{path.name}' cannot be decoded ({err})") from err
    return info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else 0.0


def _usable(clips: AudioClips, check, skip_bad: bool, skipped: list[tuple[str, int, str]]):
    """``(index, check(index))`` for each clip ``check`` accepts; a :class:`_BadClip` from it stops with the clip's
    file and line, or with ``skip_bad`` is recorded in ``skipped`` as ``(file, line, reason)``."""
    for i in range(len(clips)):
        try:
            yield i, check(i)
        except _BadClip as err:
            source, line = clips.where(i)
            if not skip_bad:
                place = f"{source}, line {line}" if line else source
                raise SpeechDataError(f"{place}: {err} (use --skip-bad to leave such clips out)") from None
            skipped.append((source, line, str(err)))


def _read(path) -> Tensor:
    try:
        return load_audio(path)
    except AudioError as err:
        raise SpeechDataError(str(err)) from err


def read_at_speed(path, speeds: Sequence[float]) -> Tensor:
    """A clip's 16 kHz waveform, played at a speed drawn from ``speeds`` (torch's global generator; none = 1):
    speed perturbation (Ko et al. 2015) by resampling, so tempo and pitch change together."""
    audio = _read(path)
    if speeds:
        speed = speeds[int(torch.randint(len(speeds), ()))]
        if speed != 1.0:  # played faster: fewer samples at the same rate
            audio = resample(audio, round(SAMPLE_RATE * speed / 100) * 100, SAMPLE_RATE)
    return audio


class AsrBatch(NamedTuple):
    """A padded batch: features (B, M, F), decoder inputs (B, T), labels (B, T), the reference texts and each
    clip's frames before padding (B,)."""

    features: Tensor
    tokens_in: Tensor
    labels: Tensor
    texts: list[str]
    frames: Tensor


class AsrExamples(Dataset):
    """``(features (M, F), tokens (T,))`` for each usable clip of ``clips``; ``texts[i]`` is its transcription.

    Args:
        clips: labelled clips (from :func:`~polyformer.speech.data.read_audio_dataset`).
        tokenizer: a :class:`~polyformer.speech.whisper.tokenizer.WhisperTokenizer`.
        prompt: the decoder prompt ids (``tokenizer.sot_sequence(...)``).
        n_mels: mel bins of the model.
        fixed_window: every example gets 30 s of frames (OpenAI's checkpoints); False: the clip's own length.
        max_tokens: the decoder's positions (prompt, text and end token must fit).
        skip_bad: leave bad clips out (listed in ``skipped``) instead of raising :class:`SpeechDataError`.
        speeds: speed perturbation for training (Ko et al. 2015): each read plays the clip at a factor drawn from
            these (e.g. ``(0.9, 1.0, 1.1)``; tempo and pitch change together, as a different voice would), with
            torch's global generator (reproducible under the engine); empty = as recorded.
    """

    def __init__(
        self,
        clips: AudioClips,
        tokenizer,
        prompt: Sequence[int],
        n_mels: int = 80,
        fixed_window: bool = False,
        max_tokens: int = 448,
        skip_bad: bool = False,
        speeds: Sequence[float] = (),
    ):
        if any(not 0.5 <= speed <= 2.0 for speed in speeds):
            raise ValueError(f"speed perturbation factors must be within [0.5, 2], got {list(speeds)}")
        self.speeds = [float(speed) for speed in speeds]
        if clips.texts is None:
            raise SpeechDataError("speech recognition needs transcriptions; these clips have none")
        self.tokenizer, self.prompt, self.n_mels, self.fixed_window = tokenizer, list(prompt), n_mels, fixed_window
        self.paths, self.texts, self.token_ids, self.sample_lengths = [], [], [], []
        self.skipped: list[tuple[str, int, str]] = list(clips.skipped)
        def check(i: int) -> tuple[int, list[int]]:
            return self._check(clips.paths[i], clips.texts[i], max_tokens)

        for i, (frames, ids) in _usable(clips, check, skip_bad, self.skipped):
            self.paths.append(clips.paths[i])
            self.texts.append(clips.texts[i])
            self.token_ids.append(ids)
            self.sample_lengths.append(frames)  # for length bucketing
        if not self.paths:
            raise SpeechDataError(f"no usable clips: all {len(clips)} were bad (the first: {self.skipped[-1][2]})")

    def _check(self, path, text: str, max_tokens: int) -> tuple[int, list[int]]:
        name = path.name
        seconds = _seconds(path)
        if seconds <= 0:
            raise _BadClip(f"'{name}' holds no audio samples")
        if seconds > N_SAMPLES / SAMPLE_RATE:
            raise _BadClip(f"'{name}' is {seconds:.1f} s long, more than the model's 30 s window; cut it first")
        if not text.strip():
            raise _BadClip(f"the transcription of '{name}' is empty")
        body = self.tokenizer.text_prefix + text.strip()
        unknown = self.tokenizer.unknown_characters(body)
        if unknown:
            raise _BadClip(
                f"the transcription of '{name}' has characters outside the tokenizer's vocabulary: "
                + ", ".join(repr(c) for c in unknown)
            )
        ids = [*self.prompt, *self.tokenizer.encode(body), self.tokenizer.eot]
        if len(ids) > max_tokens:
            raise _BadClip(f"the transcription of '{name}' takes {len(ids)} tokens, the decoder at most {max_tokens}")
        frames = math.ceil(seconds * SAMPLE_RATE / HOP_LENGTH)
        return (N_FRAMES if self.fixed_window else silence_margin_frames(frames)), ids

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, str]:
        audio = read_at_speed(self.paths[index], self.speeds)[:N_SAMPLES]
        if self.fixed_window:
            features = log_mel_spectrogram(audio, self.n_mels, padding=N_SAMPLES - audio.numel())
        else:
            features = log_mel_spectrogram(audio, self.n_mels, padding=_SILENCE_SAMPLES)
            features = features[:, : silence_margin_frames(math.ceil(audio.numel() / HOP_LENGTH))]
        return features, torch.tensor(self.token_ids[index]), self.texts[index]


def collate_asr(samples: Sequence[tuple[Tensor, Tensor, str]], pad_id: int, prompt_length: int) -> AsrBatch:
    """Pad ``(features, tokens, text)`` examples into an :class:`AsrBatch`: features with each clip's own silence
    frame (its last) to the longest; decoder inputs ``tokens[:-1]`` padded with ``pad_id``; labels ``tokens[1:]``
    with the positions of the prompt and of the padding ignored."""
    if not samples:
        raise ValueError("an empty batch")
    frames = max(f.shape[-1] for f, _, _ in samples)
    features = torch.stack([torch.cat([f, f[:, -1:].expand(-1, frames - f.shape[-1])], dim=1) for f, _, _ in samples])
    length = max(t.numel() for _, t, _ in samples) - 1
    tokens_in = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    for row, (_, tokens, _) in enumerate(samples):
        n = tokens.numel() - 1
        tokens_in[row, :n] = tokens[:-1]
        labels[row, :n] = tokens[1:]
    labels[:, : max(prompt_length - 1, 0)] = IGNORE_INDEX
    lengths = torch.tensor([f.shape[-1] for f, _, _ in samples])
    return AsrBatch(features, tokens_in, labels, [text for _, _, text in samples], lengths)


class AudioCrops(Dataset):
    """Unlabelled clips as 16 kHz waveforms for self-supervised pretraining (wav2vec 2.0 style): a clip longer than
    ``max_seconds`` is cut to a window of that length at a random offset each time it is read (torch's global
    generator: reproducible under the engine), shorter ones are kept whole. ``sample_lengths`` (samples, capped at
    the crop) serve length bucketing.

    Args:
        clips: clips from :func:`~polyformer.speech.data.read_audio_dataset` (texts, if any, are ignored).
        max_seconds: the longest window.
        min_seconds: shorter clips are left out (counted in ``skipped``) or, without ``skip_bad``, an error.
        skip_bad: leave unreadable and too-short clips out instead of raising :class:`SpeechDataError`.
    """

    def __init__(self, clips: AudioClips, max_seconds: float = 15.0, min_seconds: float = 0.5, skip_bad: bool = False):
        if not 0 < min_seconds <= max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
        self.max_samples = round(max_seconds * SAMPLE_RATE)
        self.paths: list = []
        self.sample_lengths: list[int] = []
        self.skipped: list[tuple[str, int, str]] = list(clips.skipped)
        def check(i: int) -> float:
            seconds = _seconds(clips.paths[i])
            if seconds < min_seconds:
                raise _BadClip(f"'{clips.paths[i].name}' is {seconds:.2f} s, under {min_seconds} s")
            return seconds

        for i, seconds in _usable(clips, check, skip_bad, self.skipped):
            self.paths.append(clips.paths[i])
            self.sample_lengths.append(min(round(seconds * SAMPLE_RATE), self.max_samples))
        if not self.paths:
            raise SpeechDataError(f"no usable clips: all {len(clips)} were bad or too short")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        audio = _read(self.paths[index])
        extra = audio.numel() - self.max_samples
        if extra > 0:
            start = int(torch.randint(extra + 1, ()))
            audio = audio[start : start + self.max_samples]
        return audio


def collate_audio(samples: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad waveforms (N,) into ``(audio (B, N), mask (B, N))``; the mask is True on real samples."""
    if not samples:
        raise ValueError("an empty batch")
    longest = max(s.numel() for s in samples)
    audio = torch.zeros(len(samples), longest)
    mask = torch.zeros(len(samples), longest, dtype=torch.bool)
    for row, sample in enumerate(samples):
        audio[row, : sample.numel()] = sample
        mask[row, : sample.numel()] = True
    return audio, mask
