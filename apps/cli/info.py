"""``polyformer info``: versions, threads, bf16 speed, attention backends and model presets."""

from __future__ import annotations

import importlib
import platform

import click
import torch

from polyformer.apps import __version__
from polyformer.apps.engine.hardware import bf16_is_fast, matmul_gflops

__all__ = ["DOMAIN_PACKAGES", "info"]

DOMAIN_PACKAGES = ("polyformer.vision", "polyformer.speech", "polyformer.bio", "polyformer.text")


@click.command()
@click.option("--no-measure", is_flag=True, help="Skip the short fp32/bf16 matmul measurement.")
def info(no_measure: bool) -> None:
    """Versions, threads, bf16 speed, attention backends and model presets."""
    from polyformer.core import list_attention_backends, list_presets

    for package in DOMAIN_PACKAGES:  # importing a domain registers its presets
        importlib.import_module(package)
    click.echo(f"polyformer  {__version__}")
    click.echo(f"python      {platform.python_version()}  ({platform.machine()})")
    click.echo(f"torch       {torch.__version__}  (CUDA available: {torch.cuda.is_available()})")
    click.echo(f"threads     {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op")
    fast = bf16_is_fast("cuda" if torch.cuda.is_available() else "cpu")
    line = f"bf16        {'fast (native bf16 matmul)' if fast else 'not accelerated here'}"
    if not no_measure:
        fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
        line += f"; CPU matmul {fp32:.0f} GFLOP/s fp32, {bf16:.0f} GFLOP/s bf16 ({bf16 / fp32:.1f}x)"
    click.echo(line)
    click.echo(f"attention   {', '.join(list_attention_backends())}")
    click.echo("presets")
    for preset in list_presets():
        click.echo(f"  {preset.name:<28} {preset.family:<12} {preset.description}")
