"""Splice junctions: what pretraining on a genome buys, at 10%, 30% and 100% of the training labels.

For each share of the shipped splice-junction training labels (a seeded, stratified subset; the same
held-out validation rows and the fixed 750-sequence test split every time), two runs of the
``dnabert_splice`` recipe, as ``polyformer bio finetune splice`` runs it:

- ``pretrained``: ``--init`` the pretrained 3-mer encoder (default: the shipped ``dnabert_ct_3mer``,
  pretrained on the *C. trachomatis* genome by the ``dnabert_genome`` recipe);
- ``scratch``: the same architecture, tokenizer and recipe from a random initialisation.

Each run's best model (by validation accuracy) is tested once; the table gives test accuracy, macro F1,
MCC and AUROC, and the gain of pretraining in accuracy points. With fewer labels the recipe runs
proportionally fewer steps (the same number of epochs), as a user with less data would.

Run: ``python benchmarks/dnabert_splice.py [--fractions 0.1,0.3,1.0] [--seeds 0] [--init DIR]``
(a few minutes per run on 2 CPU cores; run it in the background).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from polyformer.apps.engine.hardware import machine_summary
from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS
from polyformer.apps.recipes.bio_finetune import finetune_dna_classifier, load_finetune_recipe

METRICS = ("accuracy", "f1", "mcc", "auroc")


def run(fraction: float, seed: int, init: str | None, out: Path, extra: list[str]) -> dict[str, float]:
    """Test metrics of one fine-tuning run."""
    overrides = [f"data.label_fraction={fraction}", f"train.seed={seed}", f"train.out_dir={out}",
                 "train.quiet=true", "train.plot=false", *extra]  # fmt: skip
    if init:
        overrides.append(f"model.init={json.dumps(init)}")
    finetune_dna_classifier(load_finetune_recipe("dnabert_splice", overrides), echo=lambda line: None)
    return json.loads((out / "test_metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", default="0.1,0.3,1.0")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--init", default=None, help="pretrained encoder [default: the shipped dnabert_ct_3mer]")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("overrides", nargs="*", help="recipe key=value overrides for both runs")
    args = parser.parse_args()
    if args.init is None and "dnabert_ct_3mer" not in SHIPPED_CHECKPOINTS:
        parser.error("the shipped dnabert_ct_3mer is not installed here; give a pretrained encoder with --init")
    init = args.init or str(SHIPPED_CHECKPOINTS["dnabert_ct_3mer"])
    print(machine_summary())
    print(f"pretrained encoder: {init}")
    print(f"{'labels':>7} {'run':<11} " + " ".join(f"{m:>9}" for m in METRICS) + "   gain (accuracy points)")
    results = []
    for fraction in [float(f) for f in args.fractions.split(",")]:
        row: dict[str, dict[str, float]] = {}
        for name, start in (("pretrained", init), ("scratch", None)):
            scores = []
            for seed in [int(s) for s in args.seeds.split(",")]:
                with tempfile.TemporaryDirectory() as tmp:
                    scores.append(run(fraction, seed, start, Path(tmp) / "run", args.overrides))
            row[name] = {m: statistics.mean(s[m] for s in scores) for m in METRICS}
            results.append({"fraction": fraction, "run": name, **row[name]})
        for name in ("pretrained", "scratch"):
            gain = 100 * (row["pretrained"]["accuracy"] - row["scratch"]["accuracy"])
            shown = f"   {gain:+.2f}" if name == "pretrained" else ""
            print(f"{fraction:>7.0%} {name:<11} " + " ".join(f"{row[name][m]:>9.4f}" for m in METRICS) + shown,
                  flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
