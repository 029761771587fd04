"""The polyformer command line: version, info, demo."""

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
    assert "transformer_tiny" in result.output
    assert "bf16" in result.output


def test_unknown_command_fails():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code != 0
