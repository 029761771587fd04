"""The benchmark scripts run end to end at toy sizes and print every row they promise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SKIPPED_BF16 = "bf16 rows skipped: bf16 is emulated on this CPU (POLYFORMER_NATIVE_BF16=0)"


def run_script(name: str, *args: str, native_bf16: str = "1") -> str:
    """Run a benchmark at toy size; ``native_bf16`` sets POLYFORMER_NATIVE_BF16 for it (toy bf16 rows are
    cheap even where bf16 is emulated). Every script's output names the machine it ran on."""
    env = {**os.environ, "POLYFORMER_NATIVE_BF16": native_bf16}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CPU: " in result.stdout and f"native bf16: {'yes' if native_bf16 == '1' else 'no'}" in result.stdout
    return result.stdout


def test_core_layers_prints_all_modes():
    out = run_script("core_layers.py", "--batch", "1", "--seq", "16", "--dim", "32", "--heads", "2", "--rounds", "1")
    rows = [line.split() for line in out.splitlines() if line.startswith(("forward", "forward+backward"))]
    assert [(r[0], r[1]) for r in rows] == [
        ("forward", "fp32"),
        ("forward", "bf16"),
        ("forward+backward", "fp32"),
        ("forward+backward", "bf16"),
    ]
    assert all(float(value) > 0 for row in rows for value in row[2:])


def test_bf16_rows_are_skipped_where_bf16_is_emulated():
    out = run_script("core_layers.py", "--batch", "1", "--seq", "8", "--dim", "16", "--heads", "2", "--rounds", "1",
                     native_bf16="0")  # fmt: skip
    assert SKIPPED_BF16 in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("forward")] == ["fp32", "fp32"]
    out = run_script("attention_cpu_bf16.py", "--lengths", "16", "--tokens", "16", "--rounds", "1", native_bf16="0")
    assert SKIPPED_BF16 in out and not any(line.split()[:1] == ["16"] for line in out.splitlines())


def test_attention_cpu_bf16_prints_each_length():
    out = run_script("attention_cpu_bf16.py", "--lengths", "16", "40", "--tokens", "80", "--rounds", "1")
    rows = [line.split() for line in out.splitlines()]
    lengths = [row[0] for row in rows if len(row) == 8 and row[0].isdigit()]
    assert lengths == ["16", "40"]


def test_vit_vs_timm_prints_both_modes():
    """Run as on a CPU without native bf16 (a ViT-S step in emulated bf16 would take many seconds)."""
    out = run_script("vit_vs_timm.py", "--batch", "1", "--rounds", "1", native_bf16="0")
    assert out.count("vs timm fp32") == 1 and SKIPPED_BF16 in out
    for mode in ("inference", "training"):
        assert [line.split()[1:3] for line in out.splitlines() if line.startswith(mode)] == [
            ["timm", "fp32"], ["ours", "fp32"],
        ]  # fmt: skip


def test_decoding_prints_both_batches():
    out = run_script("decoding.py", "--new", "8", "--batches", "1", "2", "--rounds", "1")
    rows = [line.split() for line in out.splitlines()]
    rows = [row for row in rows if len(row) == 6 and row[0].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(float(value) > 0 for row in rows for value in row[1:])


def test_ddp_precision_prints_every_comparison():
    out = run_script("ddp_precision.py", "--steps", "3", "--curve", "1", "--images", "64", "--batch", "32")
    rows = [row.split() for row in out.splitlines() if row.startswith(("fp32 ", "bf16 "))]
    rows = {(row[0], row[1]): [float(value) for value in row[2:]] for row in rows if len(row) == 6}
    assert set(rows) == {
        ("fp32", "ddp2"), ("fp32", "accum2"), ("fp32", "ddp2-vs-accum2"),
        ("bf16", "ddp2"), ("bf16", "accum2"), ("bf16", "ddp2-vs-accum2"), ("bf16", "repeat"), ("bf16", "vs-fp32"),
    }  # fmt: skip
    fp32 = [values[:2] + values[3:] for (precision, _), values in rows.items() if precision == "fp32"]
    assert all(value < 1e-4 for values in fp32 for value in values)  # max |dw| after steps 1 and 3, rel-L2
    assert rows["bf16", "repeat"] == [0.0] * 4  # one process in bf16 is deterministic
    assert "DDP buckets torch.float32" in out


def test_finetune_gain_prints_the_three_runs():
    out = run_script("finetune_gain.py", "--per-class", "10", "--seeds", "0")
    assert out.splitlines()[1].startswith("30 images in 3 classes")
    rows = [line for line in out.splitlines() if " mean " in line]
    assert [row.split(" mean ")[0].strip() for row in rows] == [
        "init (image_folder_finetune)", "scratch, same recipe", "scratch, image_folder recipe",
    ]  # fmt: skip


def test_text_models_prints_every_comparison():
    sizes = {"--bert-layers": 1, "--bert-width": 64, "--bert-batch": 1, "--bert-seq": 16, "--new": 4, "--sentences": 1,
             "--beams": 2, "--gpt-layers": 1, "--gpt-width": 64, "--marian-layers": 1, "--marian-width": 64,
             "--marian-vocab": 100}  # fmt: skip
    out = run_script("text_models.py", "--rounds", "1", *[str(item) for pair in sizes.items() for item in pair])
    assert out.count("   ratio ") == 2 + 4 + 1
    assert "identical tokens: True" in out and "identical output: True" in out


def test_whisper_vs_transformers_prints_every_row():
    from polyformer.speech.whisper.pretrained import whisper_base_files

    if whisper_base_files() is None:
        pytest.skip("the Whisper base wheels are not installed")
    out = run_script("whisper_vs_transformers.py", "--rounds", "1", "--new", "6", "--beams", "2", native_bf16="0")
    assert SKIPPED_BF16 in out
    assert [line.split(":")[1].split()[0] for line in out.splitlines() if line.startswith("fp32:")] == [
        "encoder", "greedy", "beam",
    ]  # fmt: skip
    assert out.count("identical tokens: True") == 2
    assert "WER on the 5 LibriVox clips: ours" in out and "same texts: True" in out and "faster-whisper" in out


def test_dnabert_vs_transformers_prints_both_precisions():
    out = run_script("dnabert_vs_transformers.py", "--k", "3", "--layers", "1", "--width", "64", "--batch", "1",
                     "--seq", "16", "--rounds", "1")  # fmt: skip
    assert "vocabulary 69" in out and out.count("   ratio ") == 2


def test_dnabert_splice_prints_both_runs_per_fraction(tmp_path):
    from polyformer.bio import KmerTokenizer
    from polyformer.bio.dnabert import DnaModel, save_dnabert
    from polyformer.core import create_model

    shape = {"d_model": 32, "num_heads": 2, "d_ff": 64, "num_layers": 1, "max_len": 128}
    encoder = create_model("dnabert_mini", k=6, **shape)
    save_dnabert(DnaModel(encoder, KmerTokenizer(6), None, "polyformer"), tmp_path / "init")
    overrides = [f"model.{name}={value}" for name, value in shape.items()] + ["train.max_steps=3"]
    out = run_script("dnabert_splice.py", "--fractions", "0.1", "--init", str(tmp_path / "init"), *overrides)
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("10%")]
    assert [row[1] for row in rows] == ["pretrained", "scratch"] and len(rows[0]) == 7


def test_detr_vs_transformers_prints_both_precisions():
    out = run_script(
        "detr_vs_transformers.py", "--backbone", "resnet18", "--size", "64", "--batch", "1", "--rounds", "1"
    )
    rows = [line.split(":")[0].strip() for line in out.splitlines() if "ratio" in line]
    assert rows == ["fp32", "bf16"] and "DETR-resnet18: training step" in out


def test_whisper_training_vs_transformers_prints_both_precisions():
    out = run_script("whisper_training_vs_transformers.py", "--size", "tiny", "--batch", "1", "--tokens", "4",
                     "--rounds", "1")  # fmt: skip
    rows = [line.split(":")[0].strip() for line in out.splitlines() if "ratio" in line]
    assert rows == ["fp32", "bf16"] and "Whisper tiny (random Whisper tiny weights): training step" in out


def test_wav2vec2_pretraining_vs_transformers_prints_both_precisions():
    out = run_script("wav2vec2_pretraining_vs_transformers.py", "--size", "small", "--batch", "1", "--seconds", "1",
                     "--rounds", "1")  # fmt: skip
    rows = [line.split(":")[0].strip() for line in out.splitlines() if "ratio" in line]
    assert rows == ["fp32", "bf16"] and "wav2vec 2.0 small (4 layers, width 256; random weights)" in out


def test_wav2vec2_label_efficiency_prints_both_runs_per_fraction_and_reads_finished_runs_back(tmp_path):
    tiny = ['model.size="tiny"', "train.batch_size=4"]
    args = ["spoken", "--out", str(tmp_path / "runs"), "--pretrain-steps", "3", "--ctc-steps", "3",
            *(f"--pretrain-set={setting}" for setting in tiny), *tiny, "data.eval_limit=4"]  # fmt: skip
    args += ["--continue-steps", "2"]
    out = run_script("wav2vec2_label_efficiency.py", *args, "--ship", str(tmp_path / "shipped"))
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["10%"], ["100%"])]
    assert [(row[0], row[1]) for row in rows] == [("10%", "pretrained"), ("10%", "scratch"), ("100%", "pretrained"),
                                                  ("100%", "continued"), ("100%", "scratch")]  # fmt: skip
    assert "[pretrain] " in out and "[10% scratch] " in out and "[100% continued] " in out
    continued = json.loads((tmp_path / "runs" / "ctc_pretrained_100_continued" / "recipe.json").read_text())
    assert continued["data"]["init"].endswith("ctc_pretrained_100/best_model")
    assert not continued["data"]["freeze_feature_encoder"] and continued["train"]["max_steps"] == 2
    again = run_script("wav2vec2_label_efficiency.py", *args)  # every run finished: read back, nothing trained
    assert "[pretrain]" not in again and "[10%" not in again and again.splitlines()[-5:] == out.splitlines()[-5:]
    # the shipped copy of the continued 100% run: fp16 on disk, the same logits to fp16 precision once loaded
    from safetensors import safe_open

    from polyformer.speech.wav2vec2.pretrained import load_wav2vec2_ctc

    with safe_open(tmp_path / "shipped" / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}
    shipped, vocabulary = load_wav2vec2_ctc(tmp_path / "shipped")
    trained, _ = load_wav2vec2_ctc(tmp_path / "runs" / "ctc_pretrained_100_continued" / "best_model")
    waveform = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(shipped(waveform)[0], trained(waveform)[0], atol=2e-2, rtol=2e-2)
    assert len(vocabulary) == shipped.config.vocab_size
