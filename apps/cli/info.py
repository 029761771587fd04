"""``polyformer info``: versions, CPU, threads, native bf16 and the precision ``auto`` picks, matmul
speed, attention backends, pipeline tasks and model presets."""

from __future__ import annotations

import importlib
import platform

import click
import torch

from polyformer.apps import __version__
from polyformer.apps.engine.hardware import cpu_model, matmul_gflops, native_bf16
from polyformer.apps.engine.precision import choose_precision

__all__ = ["DOMAIN_PACKAGES", "info"]

DOMAIN_PACKAGES = ("polyformer.vision", "polyformer.speech", "polyformer.bio", "polyformer.text")


@click.command()
@click.option("--no-measure", is_flag=True, help="Skip the short fp32/bf16 matmul measurement.")
def info(no_measure: bool) -> None:
    """Versions, CPU, native bf16, precision auto picks, matmul speed, backends, pipelines and presets."""
    from polyformer.apps.pipelines import list_tasks
    from polyformer.core import list_attention_backends, list_presets

    for package in DOMAIN_PACKAGES:  # importing a domain registers its presets
        importlib.import_module(package)
    click.echo(f"polyformer  {__version__}")
    click.echo(f"python      {platform.python_version()}  ({platform.machine()})")
    click.echo(f"torch       {torch.__version__}  (CUDA available: {torch.cuda.is_available()})")
    click.echo(f"cpu         {cpu_model()}")
    click.echo(f"threads     {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    native, why = native_bf16(device)
    click.echo(f"bf16        native: {'yes' if native else 'no'} ({why})")
    click.echo(f"precision   auto -> {choose_precision('auto', device)} on {device}")
    if not no_measure:
        fp32, bf16 = matmul_gflops(torch.float32, 512, 3), matmul_gflops(torch.bfloat16, 512, 3)
        click.echo(f"matmul      CPU 512x512: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s ({bf16 / fp32:.2f}x)")
    click.echo(f"attention   {', '.join(list_attention_backends())}")
    click.echo(f"pipelines   {', '.join(task.name for task in list_tasks())}")
    click.echo("presets")
    for preset in list_presets():
        click.echo(f"  {preset.name:<28} {preset.family:<12} {preset.description}")
