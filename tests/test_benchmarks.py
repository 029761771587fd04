"""The benchmark scripts run end to end at toy sizes and print every row they promise."""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
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


def test_attention_cpu_bf16_prints_each_length():
    out = run_script("attention_cpu_bf16.py", "--lengths", "16", "40", "--tokens", "80", "--rounds", "1")
    rows = [line.split() for line in out.splitlines()]
    lengths = [row[0] for row in rows if len(row) == 8 and row[0].isdigit()]
    assert lengths == ["16", "40"]


def test_vit_vs_timm_prints_both_modes():
    out = run_script("vit_vs_timm.py", "--batch", "1", "--rounds", "1")
    assert out.count("vs timm fp32") == 1
    for mode in ("inference", "training"):
        assert sum(line.startswith(mode) for line in out.splitlines()) == 4


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
    assert out.startswith("30 images in 3 classes")
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
