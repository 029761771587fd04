"""`polyformer text`: tokenizer training, translation training on the engine, translate and eval; a tiny model
overfits 32 pairs; bad inputs are one clear line."""

import json

import pytest
import torch
from click.testing import CliRunner

from polyformer.apps.cli import main
from polyformer.apps.engine import Seq2SeqTask, TrainingConfig, train
from polyformer.core import EncoderDecoderTransformer
from polyformer.text.bible import load_bible_pairs
from polyformer.text.tokenizer import TextTokenizer
from polyformer.text.translation import TranslationPairs, pad_pairs, translate, translation_config

TINY_MODEL = [
    "model.d_model=32", "model.num_heads=2", "model.encoder_layers=1", "model.decoder_layers=1", "model.d_ff=64",
    "tokenizer.vocab_size=300", "decode.test_limit=8", "data.eval_limit=16", "train.plot=false", "train.threads=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    verses = load_bible_pairs("train")[:400]
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.write_text("".join(f"{v.en}\t{v.es}\n" for v in verses), encoding="utf-8")
    return path


def test_tokenizer_train_command(pairs_file, tmp_path):
    result = CliRunner().invoke(main, ["text", "tokenizer", "train", str(pairs_file), "--vocab-size", "300",
                                       "--out", str(tmp_path / "tok")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "unigram tokenizer with 300 tokens" in result.output
    assert TextTokenizer.load(tmp_path / "tok").vocab_size == 300


def test_train_translate_and_eval(pairs_file, tmp_path):
    out = tmp_path / "run"
    args = ["text", "train-translation", str(pairs_file), *TINY_MODEL, "--max-steps", "6", "--batch-size", "16"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "data.test=" + json.dumps(str(pairs_file))])
    assert result.exit_code == 0, result.output
    for expected in ("data: ", "380 training pairs", "tokenizer: unigram, 300 tokens", "model: encoder-decoder, 1+1",
                     "test BLEU"):  # fmt: skip
        assert expected in result.output, expected
    assert (out / "best_model" / "tokenizer.json").is_file() and (out / "test_scores.json").is_file()
    translated = CliRunner().invoke(main, ["text", "translate", "In the beginning.", "--model", str(out), "--json"])
    assert translated.exit_code == 0, translated.output
    [item] = json.loads(translated.output)
    assert item["source"] == "In the beginning." and isinstance(item["translation"], str)
    scored = CliRunner().invoke(main, ["text", "eval", str(pairs_file), "--model", str(out), "--limit", "4",
                                       "--beams", "1", "--json"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["sentences"] == 4


def test_separate_source_vocabulary(pairs_file, tmp_path):
    out = tmp_path / "run"
    args = ["text", "train-translation", str(pairs_file), *TINY_MODEL, "tokenizer.shared=false",
            "tokenizer.vocab_size=250", "--max-steps", "4", "--batch-size", "16", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "source: its own, 250 tokens" in result.output
    assert (out / "best_model" / "source_tokenizer.json").is_file()
    config = json.loads((out / "best_model" / "config.json").read_text())
    assert config["src_vocab_size"] == 250 and config["vocab_size"] == 250
    translated = CliRunner().invoke(main, ["text", "translate", "In the beginning.", "--model", str(out)])
    assert translated.exit_code == 0, translated.output
    (out / "best_model" / "source_tokenizer.json").unlink()
    broken = CliRunner().invoke(main, ["text", "translate", "x", "--model", str(out)])
    assert broken.exit_code == 1 and "separate source tokenizer" in broken.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["text", "translate", "hola"], "--model is required"),
        (["text", "train-translation", "missing.tsv", "--max-steps", "1"], "text data file missing.tsv not found"),
        (["text", "train-translation", "bible", "model.vocab_size=10"], "model.vocab_size comes from the tokenizer"),
        (["text", "train-translation", "bible", "tokenizer.kind=wordpiece"], "tokenizer.kind must be 'unigram'"),
        (["text", "train-translation", "bible", "model.layers=2"], "unknown key model.layers"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_a_tiny_model_overfits_32_pairs(tmp_path):
    torch.manual_seed(0)
    verses = [v for v in load_bible_pairs("train") if len(v.en) < 60][:32]
    sources, targets = [v.en for v in verses], [v.es for v in verses]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sources + targets), encoding="utf-8")
    tokenizer = TextTokenizer.train([corpus], kind="unigram", vocab_size=400)
    model = EncoderDecoderTransformer(translation_config(
        tokenizer, d_model=64, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=128, dropout=0.0,
        norm_first=True, position="sinusoidal", max_len=64,
    ))  # fmt: skip
    data = TranslationPairs(sources, targets, tokenizer, max_tokens=64)
    config = TrainingConfig(out_dir=str(tmp_path / "run"), batch_size=32, max_steps=250, lr=3e-3, warmup_steps=20,
                            weight_decay=0.0, precision="fp32", quiet=True, plot=False, threads=1)  # fmt: skip
    pad = model.config.pad_id
    train(model, Seq2SeqTask(pad_id=pad), data, config, collate_fn=lambda batch: pad_pairs(batch, pad))
    outputs = translate(model, tokenizer, sources, num_beams=1)
    exact = sum(out == tokenizer.decode(tokenizer.encode(ref).input_ids[0]) for out, ref in zip(outputs, targets))
    assert exact == 32, [(o, t) for o, t in zip(outputs, targets) if o != t][:3]
