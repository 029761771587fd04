"""What wav2vec 2.0 pretraining buys in speech recognition, at 10% and 100% of the transcripts.

One pretraining run of the ``wav2vec2_pretrain`` recipe on the audio of DATA (transcripts ignored), as
``polyformer speech pretrain DATA`` runs it; then, for each share of DATA's training transcripts (the first
share of the clips, as ``--label-fraction`` takes them), two CTC runs of the ``ctc`` recipe, as
``polyformer speech train-ctc DATA`` runs them, for the same number of steps:

- ``pretrained``: ``--init`` the pretraining run (its encoder; the conv feature encoder frozen; a new head);
- ``scratch``: the same architecture and recipe from a random initialisation.

With ``--continue-steps N`` the pretrained run on 100% of the labels is trained N steps more (``continued``): a
fresh warmup-cosine schedule, with the conv feature encoder trained too (``data.freeze_feature_encoder=false``);
``--continue-set`` changes its recipe further. ``--ship DIR`` writes the last of these two as a shipped fp16
directory (how ``apps/checkpoints/speech_ctc_spoken`` was made, see the README).

Each run's best model (by validation WER) transcribes DATA's test clips greedily once; the table gives their
CER and WER and what pretraining gains in CER points. Every run lives in ``--out`` and is resumed from its
newest checkpoint when the script is started again (finished runs are read back, not redone): run it in the
background, e.g. ``nohup python benchmarks/wav2vec2_label_efficiency.py data/spoken_6000 --out
runs/label_efficiency > label_efficiency.log 2>&1 &`` after writing the 6000-clip corpus with
``python -m polyformer.speech.data.make_spoken_corpus --out data/spoken_6000 --clips 6000``.

Run: ``python benchmarks/wav2vec2_label_efficiency.py DATA --out DIR [--fractions 0.1,1.0]
[--pretrain-steps 1500] [--ctc-steps 1500] [--continue-steps N] [--ship DIR] [key=value overrides for the CTC
runs]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from polyformer.apps.engine import find_checkpoints
from polyformer.apps.engine.hardware import machine_summary
from polyformer.apps.recipes.speech_ctc import load_ctc_recipe, train_ctc
from polyformer.apps.recipes.speech_wav2vec2 import load_pretrain_recipe, pretrain_wav2vec2
from polyformer.speech.wav2vec2.pretrained import load_wav2vec2_ctc

SCORES = "test_scores.json"


def _settings(out: Path, steps: int) -> list[str]:
    """Overrides that place a run in ``out``, resuming it when it has checkpoints."""
    settings = [f"train.out_dir={json.dumps(str(out))}", f"train.max_steps={steps}", "train.plot=false"]
    if out.is_dir() and find_checkpoints(out / "checkpoints"):
        settings.append(f"train.resume={json.dumps(str(out))}")
    return settings


def pretrain(data: str, out: Path, steps: int, overrides: Sequence[str]) -> Path:
    """The pretraining run in ``out`` (run, resumed or read back)."""
    if not (out / "model").is_dir():
        recipe = load_pretrain_recipe("wav2vec2_pretrain", [*_settings(out, steps), *overrides])
        recipe.data.train = data
        pretrain_wav2vec2(recipe, echo=lambda line: print(f"[pretrain] {line}", flush=True))
    return out


def finetune(data: str, out: Path, fraction: float, init: Path | None, steps: int, overrides: Sequence[str],
             tag: str | None = None) -> dict[str, float]:  # fmt: skip
    """Test scores of one CTC run in ``out`` (run, resumed or read back)."""
    if not (out / SCORES).is_file():
        recipe = load_ctc_recipe("ctc", [*_settings(out, steps), f"data.label_fraction={fraction}", *overrides])
        recipe.data.train = data
        recipe.data.init = str(init) if init else ""
        tag = tag or ("pretrained" if init else "scratch")
        _, scores = train_ctc(recipe, echo=lambda line: print(f"[{fraction:.0%} {tag}] {line}", flush=True))
        if scores is None:
            raise SystemExit(f"{data} has no test split to score the runs on")
    return json.loads((out / SCORES).read_text())


def ship(run: Path, target: Path) -> Path:
    """Write a CTC run's best model to ``target`` with its weights in fp16 (half the size; loading casts them back
    to fp32) and its ``vocab.json``: a directory to ship in ``apps/checkpoints``."""
    model, vocabulary = load_wav2vec2_ctc(run / "best_model")
    state = {name: value.half() if value.is_floating_point() else value for name, value in model.state_dict().items()}
    model.save_pretrained(target, state=state)
    vocabulary.save(target)
    return target


def _row(fraction: float, run: str, scores: dict[str, float]) -> dict[str, float | str]:
    return {"fraction": fraction, "run": run, "cer": scores["cer"], "wer": scores["wer"], "clips": scores["clips"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="an audio folder with train/validation/test splits and transcripts")
    parser.add_argument("--out", type=Path, required=True, help="the runs' folder (resumed when started again)")
    parser.add_argument("--fractions", default="0.1,1.0")
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--ctc-steps", type=int, default=1500)
    parser.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the pretraining recipe (repeatable)")  # fmt: skip
    parser.add_argument("--continue-steps", type=int, default=0, metavar="N",
                        help="train the pretrained 100%% run N steps more, its conv feature encoder too")
    parser.add_argument("--continue-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the continued run's recipe (repeatable)")
    parser.add_argument("--ship", type=Path, default=None, metavar="DIR",
                        help="write the pretrained (or continued) run on 100%% of the labels to DIR (fp16)")
    parser.add_argument("overrides", nargs="*", help="CTC recipe key=value overrides for every fine-tuning run")
    args = parser.parse_intermixed_args()
    print(machine_summary(), flush=True)
    encoder = pretrain(args.data, args.out / "pretrain", args.pretrain_steps, args.pretrain_set)
    rows = []
    for fraction in [float(f) for f in args.fractions.split(",")]:
        for name, init in (("pretrained", encoder), ("scratch", None)):
            out = args.out / f"ctc_{name}_{round(fraction * 100)}"
            rows.append(_row(fraction, name, finetune(args.data, out, fraction, init, args.ctc_steps, args.overrides)))
            if fraction == 1.0 and init is not None:
                if args.continue_steps:
                    first, out = out, out.with_name(f"{out.name}_continued")
                    changes = [*args.overrides, "data.freeze_feature_encoder=false", *args.continue_set]
                    scores = finetune(args.data, out, fraction, first / "best_model", args.continue_steps, changes,
                                      tag="continued")  # fmt: skip
                    rows.append(_row(fraction, "continued", scores))
                if args.ship:
                    print(f"shipped {out} as {ship(out, args.ship)}", flush=True)
    print(f"{'labels':>7} {'run':<11} {'test CER':>9} {'test WER':>9}   gain (CER points)")
    for row in rows:
        other = next(r for r in rows if r["fraction"] == row["fraction"] and r["run"] == "scratch")
        gain = f"   {100 * (other['cer'] - row['cer']):+.2f}" if row["run"] != "scratch" else ""
        print(f"{row['fraction']:>7.0%} {row['run']:<11} {row['cer']:>9.2%} {row['wer']:>9.2%}{gain}")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
