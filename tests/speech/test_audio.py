"""The audio front end: file reading, resampling, Whisper's log-mel features, SpecAugment."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from polyformer.speech.audio import (
    N_FRAMES,
    AudioError,
    SpecAugment,
    load_audio,
    log_mel_spectrogram,
    pad_or_trim,
    whisper_features,
)

LIBRIVOX = Path(__file__).resolve().parents[2] / "speech" / "data" / "librivox"


def real_clip() -> torch.Tensor:
    clips = sorted(LIBRIVOX.glob("*.flac"))
    if not clips:
        pytest.skip("the shipped LibriVox clips are missing")
    return load_audio(clips[0])


def test_load_audio_mixes_channels_and_resamples(tmp_path):
    t = np.arange(44_100) / 44_100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, -0.2 * tone], axis=1).astype(np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 44_100)
    audio = load_audio(path)
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert audio.shape[0] == 16_000
    # mono = channel mean = 0.4 * tone; the 440 Hz peak survives resampling
    spectrum = torch.fft.rfft(audio).abs()
    assert int(spectrum.argmax()) == 440
    assert abs(float(audio.abs().max()) - 0.2) < 0.01


@pytest.mark.parametrize("suffix", ["flac", "ogg"])
def test_load_audio_reads_compressed_formats(tmp_path, suffix):
    samples = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    path = tmp_path / f"clip.{suffix}"
    soundfile.write(path, samples, 8000)
    audio = load_audio(path)
    assert audio.shape[0] == 16_000


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: no such audio file"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all")
    with pytest.raises(AudioError, match="junk.wav: cannot decode audio"):
        load_audio(junk)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="empty.wav: the file holds no audio samples"):
        load_audio(empty)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_features_match_transformers_on_real_speech(n_mels):
    transformers = pytest.importorskip("transformers")
    audio = real_clip()
    short = audio[:40_000]
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    ref = extractor([audio.numpy(), short.numpy()], sampling_rate=16_000, return_tensors="np").input_features
    ours = whisper_features([audio, short], n_mels)
    assert ours.shape == (2, n_mels, N_FRAMES)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4, rtol=0)


def test_log_mel_single_and_batched_agree_and_floor_is_8db():
    audio = real_clip()[:32_000]
    single = log_mel_spectrogram(audio)
    batched = log_mel_spectrogram(torch.stack([audio, 0.01 * audio]))
    torch.testing.assert_close(single, batched[0])
    # (x + 4) / 4 of log10 values floored 8 below the maximum: a range of at most 2
    assert float(single.max() - single.min()) <= 2.0 + 1e-6
    with pytest.raises(ValueError, match="80 or 128 mel bins"):
        log_mel_spectrogram(audio, n_mels=40)


def test_pad_or_trim():
    x = torch.ones(5)
    assert pad_or_trim(x, 8).tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert pad_or_trim(x, 3).tolist() == [1, 1, 1]


def test_spec_augment_masks_only_in_training():
    features = torch.randn(4, 80, 300)
    augment = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=30)
    augment.eval()
    assert augment(features) is features
    augment.train()
    torch.manual_seed(1)
    out = augment(features)
    assert out.shape == features.shape
    changed = out.ne(features)
    assert bool(changed.any())
    # masks are whole mel bands or whole time spans: a changed band is changed in every frame
    fill = float(features.mean())
    masked_bins = (out == fill).all(dim=2)  # (B, M)
    masked_frames = (out == fill).all(dim=1)  # (B, F)
    assert bool((masked_bins.any(dim=1) | masked_frames.any(dim=1)).all())
    assert int(masked_bins.sum(dim=1).max()) <= 20
