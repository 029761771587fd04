"""Training examples for Whisper-style models: the shipped spoken corpus, the character tokenizer, features that
match transcription's, padding with each clip's own silence, labels, and each bad clip named or skipped."""

import csv
import random

import numpy as np
import pytest
import soundfile
import torch

from polyformer.core.objectives import IGNORE_INDEX
from polyformer.speech.audio import N_FRAMES, N_SAMPLES, SAMPLE_RATE, load_audio, log_mel_spectrogram
from polyformer.speech.data import (
    SPOKEN_CORPUS_DIR,
    AsrExamples,
    AudioCrops,
    SpeechDataError,
    collate_asr,
    collate_audio,
    read_audio_dataset,
    read_audio_splits,
)
from polyformer.speech.data import make_spoken_corpus as corpus
from polyformer.speech.whisper.tokenizer import WhisperTokenizer


def _tone(path, seconds, freq=300.0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    soundfile.write(str(path), (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SAMPLE_RATE)


def _folder(tmp_path, rows):
    for name, _ in rows:
        if name.endswith(".wav"):
            _tone(tmp_path / name, 0.5 + 0.1 * len(name))
    with (tmp_path / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcription"])
        writer.writerows(rows)
    return read_audio_dataset(tmp_path)


@pytest.fixture(scope="module")
def char_tokenizer():
    return WhisperTokenizer.train(["the quick brown fox jumps over the lazy dog's back"], kind="char",
                                  languages=(), timestamps=False)  # fmt: skip


# ----------------------------------------------------------------------------------------------- shipped corpus
def test_shipped_spoken_corpus_holds_out_the_test_voices():
    splits = read_audio_splits(SPOKEN_CORPUS_DIR)
    assert set(splits) == {"train", "validation", "test"}
    voices = {name: set(clips.extra["voice"]) for name, clips in splits.items()}
    assert voices["test"] == {name for _, name in corpus.TEST_VOICES}
    assert not voices["test"] & (voices["train"] | voices["validation"])
    assert len(voices["train"]) >= 80 and set(splits["train"].extra["engine"]) == {"espeak-ng", "flite"}
    texts = {name: set(clips.texts) for name, clips in splits.items()}
    assert not texts["test"] & texts["train"] and not texts["validation"] & texts["train"]
    assert (len(splits["test"]), len(splits["validation"])) == (200, 60) and len(splits["train"]) > 300
    allowed = set("abcdefghijklmnopqrstuvwxyz' ")
    assert all(set(text) <= allowed and 3 <= len(text.split()) <= 10 for t in texts.values() for text in t)
    for path in random.Random(0).sample(splits["test"].paths, 5):
        info = soundfile.info(str(path))
        assert info.samplerate == SAMPLE_RATE and info.channels == 1 and 0.3 < info.duration < 10


def test_corpus_script_deals_voices_and_sentences_by_split(tmp_path, monkeypatch):
    """The corpus builder on two sentences (a stand-in synthesiser, as CI has no espeak-ng): the stated voice split,
    FLAC clips at 16 kHz and a metadata.csv the reader takes."""
    spoken = []

    def fake_synthesise(voice, text, workdir, rng):
        spoken.append((voice, text))
        return np.sin(np.arange(SAMPLE_RATE) * rng.uniform(0.01, 0.1)).astype(np.float32) * 0.5

    monkeypatch.setattr(corpus, "synthesise", fake_synthesise)
    sentences = [corpus.to_sentence("In the beginning God created the heavens."),
                 corpus.to_sentence("And the earth was without form, and void.")]  # fmt: skip
    voices = corpus.split_voices()
    for split in ("train", "test"):
        report = corpus.write_split(tmp_path / split, sentences, voices[split], 6, None, subtype="PCM_16", seed=1,
                                    workdir=tmp_path)  # fmt: skip
        assert report.clips == 6
    clips = read_audio_splits(tmp_path)
    held_out = {corpus.Voice(engine, name) for engine, name in corpus.TEST_VOICES}
    assert {v for v, _ in spoken[:6]} <= set(voices["train"]) and not {v for v, _ in spoken[:6]} & held_out
    assert {v for v, _ in spoken[6:]} <= held_out
    assert clips["test"].texts[:2] == [
        "in the beginning god created the heavens",
        "and the earth was without form and void",
    ]
    assert spoken[1][1] == "and the earth was without form, and void."
    assert soundfile.info(str(clips["train"].paths[0])).samplerate == SAMPLE_RATE


# ----------------------------------------------------------------------------------------------- tokenizer
def test_character_tokenizer_round_trips_and_names_unknown_characters(char_tokenizer, tmp_path):
    text = " the lazy dog's fox"
    assert char_tokenizer.decode(char_tokenizer.encode(text)) == text
    assert len(char_tokenizer.encode(text)) == len(text)
    assert char_tokenizer.unknown_characters(" the café, dog") == "é,"
    assert char_tokenizer.sot_sequence(None) == [char_tokenizer.sot, char_tokenizer.no_timestamps]
    assert char_tokenizer.text_prefix == ""
    assert not char_tokenizer.has_timestamps and not char_tokenizer.multilingual
    char_tokenizer.save(tmp_path / "tokenizer.json")
    again = WhisperTokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.encode(text) == char_tokenizer.encode(text) and again.eot == char_tokenizer.eot
    bpe = WhisperTokenizer.train(["hello world"] * 5, vocab_size=300, languages=(), timestamps=False)
    assert bpe.unknown_characters(" héllo wörld ✓") == "" and bpe.text_prefix == " "
    with pytest.raises(ValueError, match="'bpe' or 'char'"):
        WhisperTokenizer.train(["x"], kind="word")


# ----------------------------------------------------------------------------------------------- examples
def test_examples_features_match_transcription_and_padding_is_each_clips_silence(char_tokenizer, tmp_path):
    clips = _folder(tmp_path, [("a.wav", "the fox"), ("bb.wav", "the lazy dog"), ("ccccccc.wav", "over the back")])
    prompt = char_tokenizer.sot_sequence(None)
    examples = AsrExamples(clips, char_tokenizer, prompt)
    assert len(examples) == 3 and examples.texts == ["the fox", "the lazy dog", "over the back"]
    features, tokens, text = examples[1]
    audio = load_audio(clips.paths[1])
    reference = log_mel_spectrogram(audio, 80, padding=N_SAMPLES)  # what transcription computes
    assert features.shape[1] == examples.sample_lengths[1] and features.shape[1] % 2 == 0
    assert features.shape[1] >= audio.numel() // 160 + 4
    torch.testing.assert_close(features, reference[:, : features.shape[1]])
    assert tokens.tolist() == [*prompt, *char_tokenizer.encode("the lazy dog"), char_tokenizer.eot]
    assert text == "the lazy dog"

    batch = collate_asr([examples[i] for i in range(3)], pad_id=char_tokenizer.eot, prompt_length=len(prompt))
    frames = max(examples.sample_lengths)
    assert batch.features.shape == (3, 80, frames) and batch.texts == examples.texts
    short = batch.features[0]
    short_reference = log_mel_spectrogram(load_audio(clips.paths[0]), 80, padding=N_SAMPLES)
    torch.testing.assert_close(short, short_reference[:, :frames])  # padded with silence, as inference sees it
    n = len(tokens) - 1
    assert batch.tokens_in[1, :n].tolist() == tokens[:-1].tolist()
    assert batch.labels[1, : len(prompt) - 1].eq(IGNORE_INDEX).all()
    assert batch.labels[1, len(prompt) - 1 : n].tolist() == tokens[len(prompt) :].tolist()
    assert batch.labels[0, len(examples[0][1]) - 1 :].eq(IGNORE_INDEX).all()
    assert batch.tokens_in[0, len(examples[0][1]) - 1 :].eq(char_tokenizer.eot).all()

    fixed = AsrExamples(clips, char_tokenizer, prompt, fixed_window=True)
    assert fixed[0][0].shape == (80, N_FRAMES) and fixed.sample_lengths == [N_FRAMES] * 3


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [("a.wav", "the café")],
            r"metadata.csv, line 2: the transcription of 'a.wav' has characters outside the "
            r"tokenizer's vocabulary: 'é'",
        ),
        ([("a.wav", "the fox"), ("bad.wav", "the dog")], r"line 3: 'bad.wav' cannot be decoded"),
        ([("long.wav", "the fox")], r"line 2: 'long.wav' is 31.0 s long, more than the model's 30 s window"),
        ([("a.wav", "the fox " * 40)], r"line 2: the transcription of 'a.wav' takes 3\d\d tokens, the decoder at most"),
    ],
)
def test_bad_clips_are_named_with_their_line_or_skipped(char_tokenizer, tmp_path, rows, message):
    clips = _folder(tmp_path, rows)
    if (tmp_path / "bad.wav").exists():
        (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wave file")
    if (tmp_path / "long.wav").exists():
        _tone(tmp_path / "long.wav", 31.0)
    prompt = char_tokenizer.sot_sequence(None)
    with pytest.raises(SpeechDataError, match=message + r".*--skip-bad"):
        AsrExamples(clips, char_tokenizer, prompt, max_tokens=300)
    if len(rows) == 1:
        with pytest.raises(SpeechDataError, match="no usable clips: all 1 were bad"):
            AsrExamples(clips, char_tokenizer, prompt, max_tokens=300, skip_bad=True)
    else:
        kept = AsrExamples(clips, char_tokenizer, prompt, max_tokens=300, skip_bad=True)
        assert len(kept) == 1 and [(line, r.split(" ")[0]) for _, line, r in kept.skipped] == [(3, "'bad.wav'")]


def test_unlabelled_clips_are_refused(char_tokenizer, tmp_path):
    _tone(tmp_path / "a.wav", 0.5)
    with pytest.raises(SpeechDataError, match="needs transcriptions"):
        AsrExamples(read_audio_dataset(tmp_path, labelled=False), char_tokenizer, [char_tokenizer.sot])


# ----------------------------------------------------------------------------------------------- unlabelled crops
def test_audio_crops_cut_long_clips_at_random_windows_and_pad_with_a_mask(tmp_path):
    _tone(tmp_path / "long.wav", 3.0)
    _tone(tmp_path / "short.wav", 0.8)
    crops = AudioCrops(read_audio_dataset(tmp_path, labelled=False), max_seconds=1.0)
    assert [p.name for p in crops.paths] == ["long.wav", "short.wav"]
    assert crops.sample_lengths == [SAMPLE_RATE, int(0.8 * SAMPLE_RATE)]
    full = load_audio(tmp_path / "long.wav")
    torch.manual_seed(0)
    first, second = crops[0], crops[0]
    assert first.numel() == SAMPLE_RATE and not torch.equal(first, second)
    offset = next(i for i in range(full.numel() - SAMPLE_RATE + 1) if torch.equal(full[i : i + SAMPLE_RATE], first))
    assert 0 <= offset <= 2 * SAMPLE_RATE
    torch.manual_seed(0)
    assert torch.equal(crops[0], first)  # the same generator state, the same window
    audio, mask = collate_audio([crops[0], crops[1]])
    assert audio.shape == mask.shape == (2, SAMPLE_RATE)
    assert mask.sum(1).tolist() == [SAMPLE_RATE, int(0.8 * SAMPLE_RATE)] and audio[1, ~mask[1]].eq(0).all()


def test_audio_crops_name_unreadable_and_too_short_clips_or_skip_them(tmp_path):
    _tone(tmp_path / "a.wav", 1.0)
    _tone(tmp_path / "tiny.wav", 0.1)
    (tmp_path / "broken.wav").write_bytes(b"RIFF nothing")
    clips = read_audio_dataset(tmp_path, labelled=False)
    with pytest.raises(SpeechDataError, match=r"broken.wav: 'broken.wav' cannot be decoded.*--skip-bad"):
        AudioCrops(clips)
    kept = AudioCrops(clips, skip_bad=True)
    assert [p.name for p in kept.paths] == ["a.wav"] and "under 0.5 s" in kept.skipped[1][2]
    with pytest.raises(ValueError, match="min_seconds <= max_seconds"):
        AudioCrops(clips, max_seconds=0.2)
