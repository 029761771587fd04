"""The ``polyformer`` command line: one group per domain plus ``bench``, ``info`` and ``demo``."""

from __future__ import annotations

import click

from polyformer.apps import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="polyformer")
def main() -> None:
    """polyformer: from-scratch transformers for images, audio, DNA and text."""


@main.group()
def bench() -> None:
    """Measure polyformer against references on this machine."""
