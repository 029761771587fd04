"""Masked-LM pretraining and causal-LM training on the engine: a tiny BERT beats the unigram entropy on real text
within seconds; the commands, fill-mask and text-generation pipelines work on the trained models."""

import math
from collections import Counter

import pytest
import torch
from click.testing import CliRunner

from polyformer.apps import pipeline
from polyformer.apps.cli import main
from polyformer.apps.recipes.text_lm import load_lm_recipe, train_language_model
from polyformer.text.tokenizer import TextTokenizer

SMALL = ["data.train_limit=3000", "data.eval_limit=200", "tokenizer.vocab_size=500", "train.plot=false",
         "train.quiet=true"]  # fmt: skip


def unigram_entropy(tokenizer: TextTokenizer, texts: list[str]) -> float:
    """Entropy (nats) of the maskable tokens' unigram distribution: the loss of a model ignoring context."""
    specials = {tokenizer.token_id(role) for role in ("pad", "cls", "sep", "mask", "unk")}
    counts = Counter(token for e in tokenizer.tokenizer.encode_batch(texts) for token in e.ids if token not in specials)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "run"
    recipe = load_lm_recipe("bible_mlm", [
        *SMALL, f"train.out_dir={out}", "train.max_steps=800", "train.lr=3e-3", "train.batch_size=32",
        "model.num_layers=2", "model.d_model=128", "model.d_ff=256", "model.num_heads=2", "model.norm_first=true",
        "model.dropout=0.0", "data.block_size=64",
    ])  # fmt: skip
    return train_language_model(recipe, echo=lambda line: None)


def test_a_tiny_mlm_beats_the_unigram_entropy(mlm_run):
    from polyformer.text.bible import load_bible_pairs

    tokenizer = TextTokenizer.load(mlm_run.model_dir)
    entropy = unigram_entropy(tokenizer, [v.en for v in load_bible_pairs("train")[:3000]])
    assert mlm_run.metrics["loss"] < entropy - 0.2, (mlm_run.metrics["loss"], entropy)  # 5.1 vs 5.4 nats in 20 s


def test_fill_mask_pipeline(mlm_run):
    fill = pipeline("fill-mask", model=mlm_run.out_dir, top_k=3)
    found = fill("and god said, let there be [MASK].")
    assert len(found) == 3 and all({"token", "score", "sequence"} <= set(item) for item in found)
    assert found[0]["score"] >= found[1]["score"] and "[MASK]" not in found[0]["sequence"]
    with pytest.raises(ValueError, match="no \\[MASK\\] token"):
        fill("no mask here")


def test_train_lm_and_generate_commands(tmp_path):
    out = tmp_path / "lm"
    args = ["text", "train-lm", "bible-en", *SMALL, "model.decoder_layers=1", "model.d_model=64", "model.num_heads=2",
            "model.d_ff=128", "--max-steps", "20", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    generated = CliRunner().invoke(main, ["text", "generate", "In the beginning", "And God", "--model", str(out),
                                          "--max-new-tokens", "5"])  # fmt: skip
    assert generated.exit_code == 0, generated.output
    lines = generated.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("In the beginning") and lines[1].startswith("And God")
    complete = pipeline("text-generation", model=out)
    torch.manual_seed(0)
    sampled = complete(["In the", "And"], max_new_tokens=4, sample=True, top_k=20)
    assert sampled[0].startswith("In the") and len(sampled) == 2


def test_bad_lm_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["text", "pretrain-mlm", "missing.txt", "--max-steps", "1"])
    assert result.exit_code == 1 and "missing.txt not found" in result.output
    result = CliRunner().invoke(main, ["text", "train-lm", "bible-en", "model.vocab_size=3"])
    assert result.exit_code == 1 and "model.vocab_size comes from the tokenizer" in result.output
    assert list(tmp_path.iterdir()) == []
