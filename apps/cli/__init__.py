"""The ``polyformer`` command line: one module per command group.

- :mod:`.vision`: ``polyformer vision train|eval|predict``
- :mod:`.text`: ``polyformer text tokenizer train|train-translation|translate|eval``
- :mod:`.speech`: ``polyformer speech transcribe|models``
- :mod:`.bio`: ``polyformer bio pretrain|finetune|eval|predict``
- :mod:`.common`: what the groups share (training options, the torchrun re-run, error reporting)
- :mod:`.bench`: ``polyformer bench attention|moe`` (measurements in ``benchmarks/``)
- :mod:`.check`: ``polyformer check DIR`` (verifies model, checkpoint and run directories)
- :mod:`.info`: ``polyformer info``
- :mod:`.demo`: ``polyformer demo`` (the domains' demos are in :mod:`polyformer.apps.demos`)

A new domain adds ``apps/cli/<domain>.py`` with its group and registers it below. Command
modules only parse options and print; the work is in recipes, pipelines and the engine.
"""

from __future__ import annotations

import click

from polyformer.apps import __version__

# Aliased so that ``polyformer.apps.cli.vision`` etc. stay the modules, not their groups.
from .bench import bench as bench_group
from .bio import bio as bio_group
from .check import check as check_command
from .demo import demo as demo_command
from .info import info as info_command
from .speech import speech as speech_group
from .text import text as text_group
from .vision import vision as vision_group

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="polyformer")
def main() -> None:
    """polyformer: from-scratch transformers for images, audio, DNA and text."""


_COMMANDS = (vision_group, text_group, speech_group, bio_group, bench_group, check_command, info_command, demo_command)
for command in _COMMANDS:
    main.add_command(command)
