"""The ``polyformer`` command line: one group per domain plus ``bench``, ``info`` and ``demo``."""

from __future__ import annotations

import importlib
import platform
import time

import click
import torch

from polyformer.apps import __version__
from polyformer.apps.bench_attention import attention_command
from polyformer.apps.bench_moe import moe_command
from polyformer.apps.cli_vision import vision
from polyformer.apps.hardware import bf16_is_fast, matmul_gflops

DOMAIN_PACKAGES = ("polyformer.vision", "polyformer.speech", "polyformer.bio", "polyformer.text")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="polyformer")
def main() -> None:
    """polyformer: from-scratch transformers for images, audio, DNA and text."""


@main.group()
def bench() -> None:
    """Measure polyformer against references on this machine."""


bench.add_command(attention_command, "attention")
bench.add_command(moe_command, "moe")
main.add_command(vision)


@main.command()
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


def _demo_reversal(echo) -> None:
    from polyformer.apps.recipes.reversal import ReversalSettings, decode_tokens, exact_match, make_batch, train

    settings = ReversalSettings()
    echo(
        f"[core] training a {settings.layers}+{settings.layers}-layer encoder-decoder to reverse sequences "
        f"({settings.steps} steps)"
    )
    start = time.perf_counter()
    model = train(settings, log=lambda line: echo("  " + line))
    echo(f"  trained in {time.perf_counter() - start:.1f}s")
    src, tgt = make_batch(settings, 500, torch.Generator().manual_seed(1234))
    echo(
        f"  exact match on 500 new sequences: greedy {exact_match(model, src, tgt):.1%}, beam 4 "
        f"{exact_match(model, src, tgt, 4):.1%}"
    )
    with torch.no_grad():
        out = model.generate(src[:5], max_new_tokens=src.shape[1] + 1, num_beams=4)
    echo("  input          -> beam search     (target)")
    for i in range(5):
        source, guess, target = decode_tokens(src[i]), decode_tokens(out.sequences[i]), decode_tokens(tgt[i])
        echo(f"  {source:<14} -> {guess:<15} ({target}) {'ok' if guess == target else 'WRONG'}")


def _demo_vision(echo) -> None:
    from polyformer.apps.demo_vision import run_vision_demo

    run_vision_demo(echo)


DEMOS = {"core": _demo_reversal, "vision": _demo_vision}


@main.command()
@click.option("--only", type=click.Choice(sorted(DEMOS)), multiple=True, help="Run only these parts.")
def demo(only: tuple[str, ...]) -> None:
    """The main job: each domain's demo on embedded data and shipped checkpoints."""
    torch.manual_seed(0)
    for name, run in DEMOS.items():
        if not only or name in only:
            run(click.echo)
