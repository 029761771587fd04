"""`polyformer bio` and the DNA recipes: a tiny DNABERT pretrained on the shipped genome beats the k-mer
unigram baseline, a fine-tune from it on part of the splice set beats the majority class clearly, the
model runs in eval / predict / the pipelines, and bad input is one clear line."""

import json
import random

import pytest
import torch
from click.testing import CliRunner

from polyformer.apps import pipeline
from polyformer.apps.cli import main
from polyformer.apps.recipes.bio_common import RandomStrand
from polyformer.bio import reverse_complement
from polyformer.bio.dnabert import load_dnabert

TINY = ["model.preset=dnabert_tiny", "model.d_model=64", "model.num_heads=2", "model.d_ff=128", "tokenizer.k=3",
        "train.plot=false", "train.log_every=100", "train.batch_size=32", "train.checkpoint_every=150"]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny 3-mer DNABERT pretrained for 300 steps on the shipped genome (about 15 s on 2 cores)."""
    out = tmp_path_factory.mktemp("bio") / "pretrain"
    args = ["bio", "pretrain", "genome", *TINY, "data.window=64", "data.stride=64", "data.val_fraction=0.01",
            "train.lr=3e-3", "--max-steps", "300", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_pretraining_beats_the_kmer_unigram_baseline(pretrained):
    out, output = pretrained
    baseline = json.loads((out / "baseline.json").read_text())["unigram_loss"]
    assert f"k-mer unigram baseline loss {baseline:.3f}" in output and "in spans of 3 k-mers" in output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [line for line in lines if line["event"] == "eval"][-1]["loss"]
    assert final < baseline - 0.15, (final, baseline)
    bundle = load_dnabert(out / "best_model")
    assert bundle.tokenizer.k == 3 and type(bundle.model).__name__ == "EncoderForMaskedLM"


def test_finetuning_from_the_pretrained_encoder_beats_the_majority_class(pretrained, tmp_path):
    out = tmp_path / "splice"
    args = ["bio", "finetune", "splice", *TINY[:4], "data.label_fraction=0.5", "train.lr=1e-3", "train.plot=false",
            "--init", str(pretrained[0] / "best_model"), "--max-steps", "200", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "backbone" in result.output and "training on 50% of the labels" in result.output
    assert (out / "split.json").is_file() and (out / "labels.json").is_file()
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["count"] == 750 and metrics["accuracy"] > metrics["majority"] + 0.15, metrics
    assert 0.5 < metrics["auroc"] <= 1 and metrics["mcc"] > 0.3 and metrics["f1"] > 0.5
    bundle = load_dnabert(out / "best_model")
    assert bundle.labels == ["EI", "IE", "N"]

    evaluated = CliRunner().invoke(main, ["bio", "eval", "splice", "--model", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["accuracy"] == pytest.approx(metrics["accuracy"])

    fasta = tmp_path / "two.fa"
    fasta.write_text(">donor\n" + "CAGGTAAGTAC" * 3 + "\n>other\n" + "ACGT" * 30 + "\n")
    args = ["bio", "predict", str(fasta), "--model", str(out), "--window", "40", "--json"]
    predicted = CliRunner().invoke(main, args)
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.output.splitlines()[-1])
    assert [r["name"] for r in rows] == ["donor", "other"] and len(rows[1]["windows"]) == 3
    assert sum(rows[0]["scores"].values()) == pytest.approx(1.0, abs=1e-5)

    classify = pipeline("dna-classification", model=out, rc_average=True)
    sequence = "CAGGTAAGTACCAGGTAAGTACCAGGTAAGTAC"
    assert classify(sequence)["scores"] == classify(reverse_complement(sequence))["scores"]
    embed = pipeline("dna-embedding", model=pretrained[0])
    assert len(embed(sequence)) == 64 and torch.isfinite(embed([sequence, "ACGT" * 8], as_tensor=True)).all()


def test_bad_dna_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence,label\nACGTACGTAC,EI\nACGXACGTAC,IE\n")
    result = CliRunner().invoke(main, ["bio", "finetune", str(bad), *TINY[:5], "--max-steps", "1",
                                       "--out", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 1 and "bad.csv line 3" in result.output and "--skip-bad" in result.output
    assert "Traceback" not in result.output
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    result = CliRunner().invoke(main, ["bio", "pretrain", str(empty), *TINY, "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "empty.fa: holds no records" in result.output
    result = CliRunner().invoke(main, ["bio", "predict", "ACGT-ACGT", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not found" in result.output


def test_random_strand_flips_about_half_of_the_training_items():
    torch.manual_seed(0)
    items = RandomStrand([("AACG", 1)] * 400, rc_prob=0.5)
    flipped = sum(items[i][0] == "CGTT" for i in range(400))
    assert 150 < flipped < 250 and items[0][1] == 1
    assert RandomStrand(["AACG"], rc_prob=0.0)[0] == "AACG"


def test_dnabert2_pretraining_with_bpe_resumes_with_its_own_tokenizer(tmp_path):
    fasta = tmp_path / "genome.fa"
    rng = random.Random(0)
    fasta.write_text(">g\n" + "".join(rng.choice(["ACG", "TTGCA", "GATTACA", "T"]) for _ in range(800)) + "\n")
    out = tmp_path / "bpe"
    common = ["bio", "pretrain", str(fasta), "model.preset=dnabert2_mini", "model.num_layers=1", "model.d_model=32",
              "model.num_heads=2", "model.d_ff=64", "tokenizer.kind=bpe", "tokenizer.vocab_size=60", "data.window=64",
              "data.stride=32", "data.val_fraction=0.1", "train.plot=false", "train.batch_size=8",
              "train.checkpoint_every=4"]  # fmt: skip
    first = CliRunner().invoke(main, [*common, "--max-steps", "4", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "DNA BPE, 60 tokens, trained on the training sequences" in first.output
    vocab = (out / "tokenizer.json").read_text()
    resumed = CliRunner().invoke(main, [*common, "tokenizer.vocab_size=80", "--max-steps", "8", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert "tokenizer: the resumed run's" in resumed.output and (out / "tokenizer.json").read_text() == vocab
    bundle = load_dnabert(out / "model")
    assert bundle.model.config.position == "alibi" and bundle.tokenizer.vocab_size == 60
