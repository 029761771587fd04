"""Real OpenAI Whisper base (the PyPI wheels, CTranslate2 format) on real LibriVox speech."""

import csv
from pathlib import Path

import pytest
import torch

from polyformer.speech.audio import load_audio, whisper_features
from polyformer.speech.metrics import word_error_rate
from polyformer.speech.whisper.convert import save_hf_whisper
from polyformer.speech.whisper.decoding import DecodingOptions, decode_window
from polyformer.speech.whisper.pretrained import load_whisper
from polyformer.speech.whisper.transcribe import transcribe

LIBRIVOX = Path(__file__).resolve().parents[2] / "speech" / "data" / "librivox"


@pytest.fixture(scope="module")
def base():
    return load_whisper("whisper-base")


@pytest.fixture(scope="module")
def clips():
    with open(LIBRIVOX / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [load_audio(LIBRIVOX / r["file_name"]) for r in rows], [r["transcription"] for r in rows]


def test_whisper_base_loads_from_the_wheels(base):
    model, tokenizer = base
    c = model.config
    assert (c.d_model, c.num_heads, c.encoder_layers, c.decoder_layers, c.vocab_size) == (512, 8, 6, 6, 51865)
    assert tokenizer.multilingual and tokenizer.sot == 50258 and tokenizer.timestamp_begin == 50364
    assert len(c.alignment_heads) == 8 and 50362 in c.suppress_tokens


def test_same_tokens_as_transformers_on_librivox(base, clips, tmp_path):
    transformers = pytest.importorskip("transformers")
    model, tokenizer = base
    audio, references = clips
    features = whisper_features(audio)
    save_hf_whisper(model, tmp_path, tokenizer)
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        ref = hf.generate(
            input_features=features, language="en", task="transcribe", return_timestamps=False,
            force_unique_generate_call=True, return_dict_in_generate=True, max_new_tokens=96,
        )  # fmt: skip
        memory = model.encode(features).last_hidden_state
    ours = decode_window(model, tokenizer, memory, DecodingOptions(language="en", timestamps=False, max_new_tokens=96))
    prompt = len(tokenizer.sot_sequence("en", "transcribe", timestamps=False))
    expected = []
    for row in ref.sequences.tolist():
        row = row[prompt:]
        while row and row[-1] == tokenizer.eot:
            row.pop()
        expected.append(row)
    assert [r.tokens for r in ours] == expected
    hf_texts = [tokenizer.decode(t) for t in expected]
    assert word_error_rate(references, [r.text for r in ours]) == word_error_rate(references, hf_texts)


def test_transcribe_real_speech_with_timestamps_and_language_detection(base, clips):
    model, tokenizer = base
    audio, references = clips
    results = transcribe(model, tokenizer, audio, DecodingOptions(), batch_size=3, word_timestamps_=True)
    assert all(r.language == "en" and r.language_probs["en"] > 0.9 for r in results)
    assert word_error_rate(references, [r.text for r in results]) < 0.1
    for clip, result in zip(audio, results):
        duration = clip.numel() / 16_000
        assert result.segments and result.segments[0].start < 1.0
        assert result.segments[-1].end <= duration + 0.5
        words = [w for s in result.segments for w in s.words]
        assert [w.start for w in words] == sorted(w.start for w in words)
        assert all(w.start <= w.end for w in words) and words[-1].end <= duration + 0.5


def test_long_form_windows_advance_on_timestamps(base, clips):
    model, tokenizer = base
    audio, _ = clips
    long = torch.cat(audio + audio)  # 49 s: two windows
    (result,) = transcribe(model, tokenizer, [long], DecodingOptions(language="en"), condition_on_previous_text=False)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end > 45.0
    assert len({s.seek for s in result.segments}) == 2  # the second window starts where the first's last segment ended
    assert result.text.lower().count("dashwood") == 2
