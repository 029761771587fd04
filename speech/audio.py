"""Audio front end: reading audio files, resampling, Whisper's log-mel features and SpecAugment.

- :func:`load_audio` reads wav / flac / ogg (anything libsndfile decodes) with ``soundfile``,
  averages the channels to mono and resamples to 16 kHz with torchaudio's resampler. A file that
  cannot be decoded, is empty or holds no samples is an :class:`AudioError` naming it.
- :func:`log_mel_spectrogram` computes Whisper's features in torch, batched: a 400-point STFT
  with a Hann window and hop 160, power spectrum, a Slaney mel filter bank (80 or 128 bins,
  0-8 kHz), log10 clamped at 1e-10, the 8 dB dynamic-range floor below each input's maximum,
  then ``(x + 4) / 4``. :func:`whisper_features` first pads or trims every input to 30 s, as
  Whisper's model expects.
- :class:`SpecAugment` masks frequency bands and time spans of those features while training.

Shape legend: B batch, N samples, M mel bins, F frames (N // 160).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from torch import Tensor, nn

__all__ = [
    "AudioError",
    "normalize_waveform",
    "CHUNK_SECONDS",
    "HOP_LENGTH",
    "N_FFT",
    "N_FRAMES",
    "N_SAMPLES",
    "SAMPLE_RATE",
    "SpecAugment",
    "load_audio",
    "log_mel_spectrogram",
    "mel_filters",
    "pad_or_trim",
    "resample",
    "whisper_features",
]

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s window
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def resample(audio: Tensor | np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> Tensor:
    """Resample (..., N) audio from ``orig_sr`` to ``target_sr`` with torchaudio's sinc resampler."""
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return audio
    return torchaudio.functional.resample(audio, orig_sr, target_sr)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Read an audio file as mono float32 samples (N,) in [-1, 1] at ``sample_rate``.

    Raises:
        AudioError: the file is missing, cannot be decoded, or has no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode audio ({err})") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if not bool(torch.isfinite(mono).all()):
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    return resample(mono, sr, sample_rate)


def normalize_waveform(audio: Tensor, eps: float = 1e-7) -> Tensor:
    """A clip scaled to zero mean and unit variance (wav2vec 2.0's input; transformers' ``do_normalize``)."""
    audio = audio.float()
    return (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + eps)


def pad_or_trim(audio: Tensor, length: int = N_SAMPLES) -> Tensor:
    """Zero-pad or cut the last dimension to ``length``."""
    n = audio.shape[-1]
    if n > length:
        return audio[..., :length]
    if n < length:
        return torch.nn.functional.pad(audio, (0, length - n))
    return audio


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int, device: str = "cpu") -> Tensor:
    """Whisper's mel filter bank (M, n_fft // 2 + 1): Slaney scale and Slaney area normalisation, 0-8 kHz."""
    if n_mels not in (80, 128):
        raise ValueError(f"Whisper uses 80 or 128 mel bins, got {n_mels}")
    banks = torchaudio.functional.melscale_fbanks(
        N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )  # (freqs, M)
    return banks.T.contiguous().to(device)


def log_mel_spectrogram(audio: Tensor | np.ndarray, n_mels: int = 80, padding: int = 0) -> Tensor:
    """Whisper's log-mel features (B, M, F) of 16 kHz audio (B, N) or (N,) -> (M, F).

    ``padding`` zeros are appended first (Whisper's long-form transcription pads by 30 s so the
    last window is complete). The 8 dB floor is taken below each input's own maximum.
    """
    audio = torch.as_tensor(audio, dtype=torch.float32)
    single = audio.dim() == 1
    if single:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2:
        raise ValueError(f"audio must be (N,) or (B, N) samples, got shape {tuple(audio.shape)}")
    if padding:
        audio = torch.nn.functional.pad(audio, (0, padding))
    if audio.shape[-1] == 0:
        raise ValueError("audio holds no samples")
    window = torch.hann_window(N_FFT, device=audio.device)
    spectrum = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)  # (B, freqs, F + 1)
    power = spectrum[..., :-1].abs() ** 2  # Whisper drops the last frame
    mel = mel_filters(n_mels, str(audio.device)) @ power  # (B, M, F)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    features = (log_spec + 4.0) / 4.0
    return features[0] if single else features


def whisper_features(audios: Sequence[Tensor | np.ndarray] | Tensor, n_mels: int = 80) -> Tensor:
    """Features (B, M, 3000) of clips of any length (each 16 kHz (N,)): each padded or trimmed to 30 s."""
    if isinstance(audios, Tensor) and audios.dim() == 1:
        audios = [audios]
    if len(audios) == 0:
        raise ValueError("no audio given")
    batch = torch.stack([pad_or_trim(torch.as_tensor(a, dtype=torch.float32).reshape(-1)) for a in audios])
    return log_mel_spectrogram(batch, n_mels)


class SpecAugment(nn.Module):
    """SpecAugment (Park et al. 2019) on features (B, M, F) while training: ``freq_masks`` bands of
    up to ``freq_width`` mel bins and ``time_masks`` spans of up to ``time_width`` frames (at most
    ``max_time_fraction`` of the frames) are set to the features' mean; identity in eval mode.

    Masks are drawn independently per example (torchaudio's ``iid_masks``).
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 100,
        max_time_fraction: float = 1.0,
    ):
        super().__init__()
        if min(freq_masks, freq_width, time_masks, time_width) < 0:
            raise ValueError("SpecAugment mask counts and widths must be non-negative")
        if not 0.0 < max_time_fraction <= 1.0:
            raise ValueError(f"max_time_fraction must be in (0, 1], got {max_time_fraction}")
        self.freq = torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True) if freq_width else None
        self.time = (
            torchaudio.transforms.TimeMasking(time_width, iid_masks=True, p=max_time_fraction) if time_width else None
        )
        self.freq_masks, self.time_masks = freq_masks, time_masks

    def forward(self, features: Tensor) -> Tensor:
        if not self.training:
            return features
        if features.dim() != 3:
            raise ValueError(f"SpecAugment expects features (B, M, F), got shape {tuple(features.shape)}")
        fill = features.mean()
        x = features
        for _ in range(self.freq_masks if self.freq is not None else 0):
            x = self.freq(x.unsqueeze(1), mask_value=float(fill)).squeeze(1)
        for _ in range(self.time_masks if self.time is not None else 0):
            x = self.time(x.unsqueeze(1), mask_value=float(fill)).squeeze(1)
        return x
