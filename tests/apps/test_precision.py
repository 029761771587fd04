"""Precision follows the hardware: ``auto`` picks bf16 only where it is native, the
``POLYFORMER_NATIVE_BF16`` switch overrides the detection, explicit bf16 on emulated hardware
warns once, and no shipped recipe forces bf16."""

import tomllib
import warnings
from pathlib import Path

import pytest
import torch

from polyformer.apps.engine import choose_precision, hardware, precision
from polyformer.apps.engine.hardware import NATIVE_BF16_ENV, machine_summary, native_bf16

CONFIGS = Path(__file__).resolve().parents[2] / "apps" / "recipes" / "configs"


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(precision, "_warned", set())
    monkeypatch.setattr(hardware, "measured_bf16_speed", lambda size=256: (20.0, 1.5))


def test_auto_is_fp32_when_native_bf16_is_switched_off(monkeypatch):
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    choice = choose_precision("auto", "cpu")
    assert choice == "fp32" and "POLYFORMER_NATIVE_BF16=0" in choice.describe()
    assert native_bf16("cpu") == (False, "POLYFORMER_NATIVE_BF16=0")


def test_auto_is_bf16_when_native_bf16_is_switched_on(monkeypatch):
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    choice = choose_precision("auto", "cpu")
    assert choice == "bf16" and choice.describe() == "bf16 (auto: POLYFORMER_NATIVE_BF16=1)"


def test_auto_without_the_switch_follows_the_cpu_flags(monkeypatch):
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "fma"})
    assert choose_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    choice = choose_precision("auto", "cpu")
    assert choice == "bf16" and "avx512_bf16" in choice.reason


def test_a_onednn_isa_cap_below_bf16_means_emulated(monkeypatch):
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "avx512_bf16", "amx_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert choose_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert choose_precision("auto", "cpu") == "bf16"


def test_explicit_bf16_without_native_support_warns_once_with_the_measured_speeds(monkeypatch, fresh_warnings):
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    with pytest.warns(RuntimeWarning, match=r"not native.*fp32 20\.0 GFLOP/s, bf16 1\.5 GFLOP/s \(0\.07x\)"):
        assert choose_precision("bf16", "cpu") == "bf16"  # it still runs in bf16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("bf16", "cpu") == "bf16"  # once per process


def test_explicit_bf16_with_native_support_does_not_warn(monkeypatch, fresh_warnings):
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("bf16", "cpu").describe() == "bf16 (requested)"
        assert choose_precision("fp32", "cpu").describe() == "fp32 (requested)"


def test_bad_precision_and_bad_switch_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16, got 'fp16'"):
        choose_precision("fp16", "cpu")
    monkeypatch.setenv(NATIVE_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="POLYFORMER_NATIVE_BF16 must be 0 or 1"):
        choose_precision("auto", "cpu")


def test_no_recipe_config_forces_bf16():
    configs = sorted(CONFIGS.glob("*.toml"))
    assert configs
    for path in configs:
        train = tomllib.loads(path.read_text()).get("train", {})
        assert train.get("precision", "auto") != "bf16", f"{path.name} forces bf16"


def test_the_machine_summary_names_cpu_threads_and_bf16(monkeypatch):
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    line = machine_summary()
    assert line.startswith("CPU: ") and f"{torch.get_num_threads()} threads" in line
    assert "native bf16: no (POLYFORMER_NATIVE_BF16=0)" in line


@pytest.mark.parametrize("native, line", [
    ("0", "; precision fp32 (auto: POLYFORMER_NATIVE_BF16=0)"),
    ("1", "; precision bf16 (auto: POLYFORMER_NATIVE_BF16=1)"),
])  # fmt: skip
def test_the_run_start_summary_says_which_precision_and_why(tmp_path, monkeypatch, native, line):
    from engine_tiny_run import CLASSES, ClassificationTask, NoisyBlobs, build_model, tiny_config

    from polyformer.apps.engine import train

    monkeypatch.setenv(NATIVE_BF16_ENV, native)
    lines = []
    config = tiny_config(tmp_path / "run", precision="auto", max_steps=2, quiet=False)
    train(build_model(), ClassificationTask(CLASSES), NoisyBlobs(), config, echo=lines.append)
    assert any(line in text for text in lines), lines
