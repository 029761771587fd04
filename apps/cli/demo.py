"""``polyformer demo``: every implemented domain's demo on embedded data and shipped checkpoints."""

from __future__ import annotations

import click
import torch

from polyformer.apps.demos import DEMOS, run_demo

__all__ = ["demo"]


def _help() -> str:
    parts = "\n\n".join(f"{name}: {what}." for name, (_, what) in DEMOS.items())
    return f"The main job: each implemented domain's demo on embedded data and shipped checkpoints.\n\n{parts}"


@click.command(help=_help())
@click.option("--only", type=click.Choice(sorted(DEMOS)), multiple=True, help="Run only these parts.")
def demo(only: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    for name in DEMOS:
        if not only or name in only:
            run_demo(name, click.echo)
