"""The polyformer command line: version, info, demo."""

import pytest
from click.testing import CliRunner

from polyformer.apps import __version__
from polyformer.apps.cli import main


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_info_lists_backends_and_presets():
    result = CliRunner().invoke(main, ["info", "--no-measure"])
    assert result.exit_code == 0, result.output
    assert "eager" in result.output and "sdpa" in result.output
    assert "transformer_tiny" in result.output and "detr_resnet50" in result.output
    assert "bf16" in result.output


@pytest.mark.parametrize("native, picked", [("0", "fp32"), ("1", "bf16")])
def test_info_shows_the_cpu_native_bf16_matmul_speed_and_what_auto_picks(monkeypatch, native, picked):
    monkeypatch.setenv("POLYFORMER_NATIVE_BF16", native)
    lines = CliRunner().invoke(main, ["info"]).output.splitlines()
    fields = dict(line.split(None, 1) for line in lines if len(line.split()) > 1 and not line.startswith(" "))
    answer = "yes" if native == "1" else "no"
    assert fields["cpu"] and fields["bf16"] == f"native: {answer} (POLYFORMER_NATIVE_BF16={native})"
    assert fields["precision"] == f"auto -> {picked} on cpu"
    assert fields["matmul"].startswith("CPU 512x512: fp32 ") and "GFLOP/s, bf16 " in fields["matmul"]
    assert "image-classification" in fields["pipelines"]


def test_unknown_command_fails():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code != 0
