"""``polyformer bench``: measure polyformer against references on this machine.

The measurements live in ``benchmarks/`` (installed as ``polyformer.benchmarks``), beside the
side-by-side scripts of ``make bench``; this module only parses options and prints.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
import torch

from polyformer.apps.engine.hardware import machine_summary
from polyformer.benchmarks.attention_backends import (
    DEFAULT_BACKENDS,
    SWEEP_SCALES,
    atomic_write,
    available_memory_bytes,
    format_summary,
    parse_backend_list,
    performer_feature_errors,
    run_benchmark,
    save_plot,
    summarise,
)
from polyformer.benchmarks.moe import run_moe_benchmark
from polyformer.core import list_attention_backends

__all__ = ["bench"]


@click.group()
def bench() -> None:
    """Measure polyformer against references on this machine."""


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if any(value < 1 for value in values):
        raise click.BadParameter(f"{what} must be positive, got {text!r}")
    return values


@bench.command("attention")
@click.option("--backends", default=DEFAULT_BACKENDS, show_default=True, help="Comma-separated backend specs.")
@click.option("--seq", "seq_text", default="512,1024,2048,4096,8192,16384", show_default=True, help="Sequence lengths.")
@click.option("--dim", default=256, show_default=True, help="Model width D (split over the heads).")
@click.option("--heads", default=4, show_default=True, help="Attention heads H.")
@click.option(
    "--causal", is_flag=True, help="Causal self-attention (backends that cannot do it are reported unsupported)."
)
@click.option("--backward", is_flag=True, help="Time forward + backward instead of forward only.")
@click.option("--repeats", default=3, show_default=True, help="Timed calls per case (median reported).")
@click.option("--fit-from", default=2048, show_default=True, help="Fit the scaling exponents from this length up.")
@click.option(
    "--max-memory", type=float, default=None, help="Memory limit in GiB (default: half of the available memory)."
)
@click.option(
    "--features-sweep",
    default="64,128,256",
    show_default=True,
    help="Performer feature counts for the error sweep ('' to skip).",
)
@click.option("--sweep-len", default=1024, show_default=True, help="Sequence length of the Performer error sweep.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write all results as JSON.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a time/memory plot (PNG)."
)
def attention_command(
    backends,
    seq_text,
    dim,
    heads,
    causal,
    backward,
    repeats,
    fit_from,
    max_memory,
    features_sweep,
    sweep_len,
    seed,
    json_path,
    plot_path,
) -> None:
    """Time, peak memory and error of attention backends against sequence length."""
    try:
        specs = parse_backend_list(backends)
    except ValueError as err:
        raise click.BadParameter(
            f"{err} (registered: {', '.join(list_attention_backends())})", param_hint="--backends"
        ) from None
    lengths = _int_list(seq_text, "--seq")
    if heads < 1 or dim % heads:
        raise click.BadParameter(f"--heads={heads} must be positive and divide --dim={dim}")
    if repeats < 1:
        raise click.BadParameter("--repeats must be >= 1")
    limit = int((max_memory * 2**30) if max_memory else available_memory_bytes() * 0.5)
    settings = dict(
        heads=heads,
        head_dim=dim // heads,
        causal=causal,
        backward=backward,
        repeats=repeats,
        seed=seed,
        memory_limit=limit,
        slow_call_s=20.0,
    )
    mode = ("causal" if causal else "bidirectional") + (", forward+backward" if backward else ", forward")
    title = f"attention B=1, H={heads}, D={dim}, fp32, {mode}, {torch.get_num_threads()} threads"
    click.echo(machine_summary())
    click.echo(title + f"; memory limit {limit / 2**30:.1f} GiB")
    click.echo(f"{'backend':<22} {'n':>7} {'time ms':>11} {'peak MiB':>11} {'rel err':>10}")
    rows = run_benchmark(specs, lengths, settings, log=click.echo)
    summary = summarise(rows, fit_from)
    click.echo("")
    for line in format_summary(summary, fit_from):
        click.echo(line)
    sweep = {}
    if features_sweep.strip():
        features = _int_list(features_sweep, "--features-sweep")
        sweep = performer_feature_errors(features, SWEEP_SCALES, sweep_len, heads, dim // heads, causal, seed)
        click.echo(
            f"\nperformer relative error vs exact at n={sweep_len}, q,k ~ N(0, scale^2) (mean of 3 feature draws):"
        )
        click.echo(f"{'scale':>8} " + " ".join(f"{'m=' + str(m):>9}" for m in features))
        for scale, row in sweep.items():
            click.echo(f"{scale:>8} " + " ".join(f"{row[str(m)]:>9.3f}" for m in features))
    if json_path:
        data = {
            "settings": {
                **settings,
                "dim": dim,
                "backends": specs,
                "lengths": lengths,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "machine": machine_summary(),
            }
        }
        data |= {"results": [asdict(r) for r in rows], "summary": summary, "performer_feature_errors": sweep}
        atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
        click.echo(f"wrote {json_path}")
    if plot_path:
        save_plot(rows, plot_path, title)
        click.echo(f"wrote {plot_path}")


@bench.command("moe")
@click.option("--steps", default=1000, show_default=True, help="Training steps for each model.")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--seq-len", default=64, show_default=True)
@click.option("--d-model", default=128, show_default=True)
@click.option("--heads", default=4, show_default=True)
@click.option("--layers", default=2, show_default=True)
@click.option("--d-ff", default=512, show_default=True, help="Dense inner width (each expert gets d_ff / top_k).")
@click.option("--experts", default=4, show_default=True)
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(1))
@click.option(
    "--capacity-factor", default=1.25, show_default=True, help="Expert capacity factor; 0 = never drop tokens."
)
@click.option("--every", default=1, show_default=True, type=click.IntRange(1), help="MoE in every N-th layer.")
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--eval-batches", default=20, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON.")
def moe_command(json_path: Path | None, **settings) -> None:
    """Dense feed-forward vs Mixture-of-Experts on a small character LM (same active parameters)."""
    if settings["top_k"] > settings["experts"]:
        raise click.BadParameter(f"--top-k={settings['top_k']} cannot exceed --experts={settings['experts']}")
    if settings["d_model"] % settings["heads"]:
        raise click.BadParameter(f"--heads={settings['heads']} must divide --d-model={settings['d_model']}")
    for name in ("steps", "batch_size", "seq_len", "d_ff", "eval_batches"):
        if settings[name] < 1:
            raise click.BadParameter(f"--{name.replace('_', '-')} must be >= 1")
    settings["capacity_factor"] = settings["capacity_factor"] or None
    click.echo(machine_summary())
    click.echo(
        f"char LM: {settings['layers']} layers, width {settings['d_model']}, {settings['steps']} steps of "
        f"{settings['batch_size']}x{settings['seq_len']} tokens, {torch.get_num_threads()} threads"
    )
    results = run_moe_benchmark(settings, log=click.echo)
    if json_path:
        tmp = json_path.with_name(f".{json_path.name}.tmp")
        tmp.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
        tmp.replace(json_path)
        click.echo(f"wrote {json_path}")
