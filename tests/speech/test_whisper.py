"""Whisper: parity with transformers (random weights), checkpoint interop, decoding rules, outputs."""

import json

import numpy as np
import pytest
import torch

from polyformer.speech.whisper import (
    Whisper,
    WhisperConfig,
    convert_hf_whisper_state_dict,
    save_hf_whisper,
    whisper_config_from_hf,
    whisper_sinusoids,
    whisper_to_hf_state_dict,
)
from polyformer.speech.whisper.alignment import dtw_path, split_words
from polyformer.speech.whisper.decoding import DecodingOptions, TimestampRules, compression_ratio, decode_window
from polyformer.speech.whisper.outputs import format_timestamp, render
from polyformer.speech.whisper.pretrained import find_whisper, load_whisper
from polyformer.speech.whisper.tokenizer import WhisperTokenizer, language_code
from polyformer.speech.whisper.transcribe import Segment, Transcription

transformers = pytest.importorskip("transformers")

SENTENCES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore", "hello world"]


@pytest.fixture(scope="module")
def tokenizer():
    return WhisperTokenizer.train(SENTENCES * 4, vocab_size=300, languages=("en", "de"))


def tiny_config(tokenizer, **changes):
    specials = [tokenizer.translate, tokenizer.transcribe, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm]
    base = dict(
        suppress_tokens=sorted(tokenizer.non_speech_tokens() + specials + [tokenizer.no_speech]),
        begin_suppress_tokens=[tokenizer.encode(" ")[0], tokenizer.eot],
        vocab_size=tokenizer.vocab_size, d_model=64, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=128,
        max_target_positions=64, sot_id=tokenizer.sot, eos_id=tokenizer.eot, pad_id=tokenizer.eot,
        alignment_heads=[[1, 0], [1, 2]],
    )  # fmt: skip
    base.update(changes)
    return WhisperConfig(**base)


@pytest.fixture(scope="module")
def pair(tokenizer, tmp_path_factory):
    """Our random tiny Whisper and the same weights in transformers' WhisperForConditionalGeneration."""
    torch.manual_seed(0)
    ours = Whisper(tiny_config(tokenizer)).eval()
    with torch.no_grad():  # a non-trivial EOS row and biases, so every mapping matters
        for p in ours.parameters():
            p.add_(0.02 * torch.randn_like(p))
    directory = tmp_path_factory.mktemp("hf_whisper")
    save_hf_whisper(ours, directory, tokenizer)
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(directory).eval()
    return ours, hf, directory


def features(batch=2, seed=1):
    return torch.randn(batch, 80, 3000, generator=torch.Generator().manual_seed(seed))


def test_sinusoids_are_whisper_positions():
    table = whisper_sinusoids(1500, 64)
    assert table.shape == (1500, 64)
    assert torch.equal(table[0, :32], torch.zeros(32)) and torch.equal(table[0, 32:], torch.ones(32))
    # channel 0 has timescale 1: sin(t); channel 31 the longest, 10000: sin(t / 10000)
    torch.testing.assert_close(table[7, 0], torch.tensor(np.sin(7.0), dtype=torch.float32))
    torch.testing.assert_close(table[7, 31], torch.tensor(np.sin(7 / 10000), dtype=torch.float32))


def test_logits_and_hidden_states_match_transformers(pair):
    ours, hf, _ = pair
    x, ids = features(), torch.randint(0, 200, (2, 9))
    with torch.no_grad():
        ref = hf(input_features=x, decoder_input_ids=ids, output_hidden_states=True)
        out = ours(x, ids, output_hidden_states=True)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.encoder.last_hidden_state, ref.encoder_last_hidden_state, atol=1e-4, rtol=0)


def test_hf_state_dict_round_trip_is_exact(pair):
    ours, hf, directory = pair
    back = whisper_to_hf_state_dict(ours.state_dict())
    ref = hf.state_dict()
    assert set(back) == set(ref)
    for name, tensor in ref.items():
        assert torch.equal(back[name], tensor), name
    # ... and transformers' directory loads back into ours through the loader
    model, tok = load_whisper(directory)
    loaded = whisper_to_hf_state_dict(model.state_dict())
    for name, tensor in back.items():  # (compared in transformers' names: our fused key bias is unused)
        assert torch.equal(loaded[name], tensor), name
    assert tok.sot == ours.config.sot_id and model.config.alignment_heads == [[1, 0], [1, 2]]


def _hf_new_tokens(sequences, prompt_len, eot):
    rows = []
    for row in sequences.tolist():
        row = row[prompt_len:]
        while row and row[-1] == eot:
            row.pop()
        rows.append(row)
    return rows


@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize("beams", [1, 3])
def test_generated_tokens_match_transformers(pair, tokenizer, timestamps, beams):
    ours, hf, _ = pair
    x = features(3, seed=2)
    with torch.no_grad():
        ref = hf.generate(
            input_features=x, language="de", task="transcribe", return_timestamps=timestamps, num_beams=beams,
            max_new_tokens=12, force_unique_generate_call=True, return_dict_in_generate=True,
        )  # fmt: skip
        memory = ours.encode(x).last_hidden_state
    options = DecodingOptions(language="de", timestamps=timestamps, beam_size=beams, max_new_tokens=12)
    results = decode_window(ours, tokenizer, memory, options, temperature=0.0)
    sequences = ref.sequences  # (one window, prompt included)
    prompt = len(tokenizer.sot_sequence("de", "transcribe", timestamps))
    expected = _hf_new_tokens(sequences, prompt, tokenizer.eot)
    assert [r.tokens for r in results] == expected
    if timestamps:
        assert all(r.tokens[0] >= tokenizer.timestamp_begin for r in results)


def test_timestamp_rules_on_constructed_logits():
    tb, eot, no_ts = 10, 5, 9
    rules = TimestampRules(tb, eot, no_ts, max_initial_index=3)
    logits = torch.zeros(1, 30)
    first = rules(torch.empty(1, 0, dtype=torch.long), logits)
    allowed = torch.isfinite(first[0]).nonzero().flatten().tolist()
    assert allowed == [10, 11, 12, 13]  # a timestamp first, at most 3 steps in
    # after text and one timestamp: only timestamps (not earlier ones) or end-of-text
    text_heavy = torch.zeros(1, 30)
    text_heavy[0, eot] = 10.0  # (so that the timestamps' total does not rule out end-of-text)
    after_one = rules(torch.tensor([[12, 3, 14]]), text_heavy)
    assert torch.isfinite(after_one[0]).nonzero().flatten().tolist() == [5, 6, 7, 8] + list(range(14, 30))
    # after a pair: text only (or end-of-text)
    after_pair = rules(torch.tensor([[12, 3, 14, 14]]), logits)
    assert not bool(torch.isfinite(after_pair[0, tb:]).any())
    assert not bool(torch.isfinite(after_pair[0, no_ts]))
    # when the timestamps' total probability beats every text token, text is ruled out
    skewed = torch.zeros(1, 30)
    skewed[0, 15:] = 2.0
    forced = rules(torch.tensor([[12, 3]]), skewed)
    assert not bool(torch.isfinite(forced[0, :tb]).any())


def test_dtw_follows_the_cheap_diagonal():
    cost = np.ones((4, 8))
    for i, j in [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5), (3, 6), (3, 7)]:
        cost[i, j] = 0.0
    rows, cols = dtw_path(cost)
    assert rows.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert cols.tolist() == list(range(8))
    # agrees with a plain quadratic DTW on random costs
    rng = np.random.default_rng(0)
    cost = rng.random((6, 11))
    acc = np.full((7, 12), np.inf)
    acc[0, 0] = 0
    for i in range(1, 7):
        for j in range(1, 12):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    rows, cols = dtw_path(cost)
    assert np.isclose(cost[rows, cols].sum(), acc[6, 11])


def test_split_words_keeps_punctuation_with_words(tokenizer):
    words, groups = split_words(tokenizer, tokenizer.encode(" hello world, the dog."))
    assert [w.strip() for w in words] == ["hello", "world,", "the", "dog."]
    assert sum(len(g) for g in groups) == len(tokenizer.encode(" hello world, the dog."))


def test_output_formats():
    seg = dict(tokens=[], temperature=0.0, avg_logprob=-0.1, compression_ratio=1.0, no_speech_prob=0.0)
    result = Transcription(
        " Hello there. General Kenobi.",
        [Segment(id=0, seek=0, start=0.0, end=1.5, text=" Hello there.", **seg),
         Segment(id=1, seek=0, start=1.5, end=3661.25, text=" General Kenobi.", **seg)],
        "en",
    )  # fmt: skip
    assert render(result, "txt") == "Hello there.\nGeneral Kenobi.\n"
    srt = render(result, "srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n00:00:01,500 --> 01:01:01,250")
    assert render(result, "vtt").startswith("WEBVTT\n\n00:00.000 --> 00:01.500\nHello there.\n")
    tsv = render(result, "tsv").splitlines()
    assert tsv == ["start\tend\ttext", "0\t1500\tHello there.", "1500\t3661250\tGeneral Kenobi."]
    data = json.loads(render(result, "json"))
    assert data["language"] == "en" and data["segments"][1]["end"] == 3661.25
    assert format_timestamp(59.9996) == "01:00.000"
    with pytest.raises(ValueError, match="unknown output format"):
        render(result, "docx")


def test_compression_ratio_flags_loops():
    assert compression_ratio("the cat sat on the mat") < 1.5
    assert compression_ratio("the cat " * 40) > 2.4


def test_bad_inputs_are_clear(pair, tokenizer, tmp_path):
    ours, _, _ = pair
    with pytest.raises(ValueError, match="80 mel bins"):
        ours.encode(torch.randn(1, 128, 3000))
    with pytest.raises(ValueError, match="even number of frames up to 3000"):
        ours.encode(torch.randn(1, 80, 3002))
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        language_code("klingon")
    assert language_code("German") == "de"
    with pytest.raises(ValueError, match="no language 'fr'"):
        tokenizer.sot_sequence("fr")
    with pytest.raises(ValueError, match="task must be"):
        DecodingOptions(task="summarise")
    with pytest.raises(FileNotFoundError, match="not a Whisper model directory"):
        find_whisper(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model, not a Whisper model"):
        find_whisper(tmp_path)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tiny_config(tokenizer, sot_id=10**6)


def test_hf_config_mapping_rejects_what_is_not_whisper():
    with pytest.raises(ValueError, match="not 'whisper'"):
        whisper_config_from_hf({"model_type": "bart"})
    cfg = whisper_config_from_hf(
        {"model_type": "whisper", "vocab_size": 51865, "d_model": 384, "encoder_attention_heads": 6,
         "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536, "num_mel_bins": 80}
    )  # fmt: skip
    assert (cfg.d_model, cfg.num_heads, cfg.d_ff) == (384, 6, 1536)
    state = {"model.encoder.layers.0.self_attn.bogus.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="has no counterpart"):
        convert_hf_whisper_state_dict(state)


def test_fallback_retries_a_looping_window_at_the_next_temperature(pair, tokenizer, monkeypatch):
    """A window whose text repeats (compression ratio above the threshold) is decoded again at the
    next temperature; a window that passes is kept at the first; the last try stands."""
    from polyformer.speech.whisper import decoding
    from polyformer.speech.whisper.decoding import DecodingResult, decode_with_fallback

    calls = []

    def fake_decode(model, tok, memory, options, temperature=0.0, languages=None, previous=None):
        calls.append((temperature, memory.shape[0]))
        out = []
        for row in range(memory.shape[0]):
            looping = temperature < 0.4 and (memory.shape[0] == 1 or row == 0)
            text = "the cat " * 40 if looping else "the cat sat on the mat"
            out.append(DecodingResult([5], text, -0.3, 0.01, temperature, decoding.compression_ratio(text)))
        return out

    monkeypatch.setattr(decoding, "decode_window", fake_decode)
    memory = torch.zeros(2, 4, 64)
    options = DecodingOptions(language="en", temperature=(0.0, 0.2, 0.4, 0.6))
    first, second = decode_with_fallback(pair[0], tokenizer, memory, options)
    assert (first.temperature, second.temperature) == (0.4, 0.0)
    assert calls == [(0.0, 2), (0.2, 1), (0.4, 1)]  # only the looping window is retried
    assert first.text == "the cat sat on the mat"
    calls.clear()
    (only,) = decode_with_fallback(pair[0], tokenizer, memory[:1], DecodingOptions(language="en", temperature=0.0))
    assert only.temperature == 0.0 and only.compression_ratio > 2.4 and calls == [(0.0, 1)]  # no ladder: kept


def test_ctranslate2_reader_gives_the_tensors_of_the_hf_conversion(pair, tmp_path):
    """CTranslate2's own converter turns transformers' directory into a faster-whisper directory;
    our reader of that format loads exactly the tensors our Hugging Face loader does."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    _, _, directory = pair
    converter = ctranslate2.converters.TransformersConverter(str(directory), copy_files=["tokenizer.json"])
    converter.convert(str(tmp_path / "ct2"), quantization="float32")
    from_hf, hf_tokenizer = load_whisper(directory)
    from_ct2, ct2_tokenizer = load_whisper(tmp_path / "ct2")
    assert find_whisper(tmp_path / "ct2").kind == "ctranslate2"
    a, b = from_hf.state_dict(), from_ct2.state_dict()
    assert set(a) == set(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert from_ct2.config.alignment_heads == from_hf.config.alignment_heads
    assert from_ct2.config.suppress_tokens == from_hf.config.suppress_tokens
    assert ct2_tokenizer.sot == hf_tokenizer.sot and from_ct2.config.sot_id == from_hf.config.sot_id
