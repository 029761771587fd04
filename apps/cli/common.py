"""What every domain's command group shares: the multi-process re-run, error reporting and training options.

- :func:`argv_without_nproc` rebuilds a command's arguments (minus ``--nproc``) for the torchrun re-run;
- :func:`run_training` runs a recipe's training function with the one-line error and
  interrupted-run handling every ``train`` command wants (only rank 0 prints);
- :func:`training_options` adds the options every ``train`` command has (``--epochs``, ``--out``,
  ``--resume``, ``--nproc``, ...) and :func:`apply_training_options` puts them into a
  :class:`~polyformer.apps.engine.TrainingConfig`;
- :func:`check_output_file` refuses an output file in a directory that does not exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from polyformer.apps.engine import (
    NonFiniteLossError,
    TrainingConfig,
    TrainingInterrupted,
    launch_with_torchrun,
    shutdown_distributed,
    under_torchrun,
)

__all__ = [
    "USER_ERRORS",
    "apply_training_options",
    "argv_without_nproc",
    "check_output_file",
    "check_overrides",
    "relaunch_with_nproc",
    "run_training",
    "secondary_process",
    "training_options",
]

USER_ERRORS = (ValueError, FileNotFoundError, NonFiniteLossError)


def check_output_file(path: str) -> None:
    """An output file's directory must exist (nothing is created silently)."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise click.BadParameter(f"directory {parent} does not exist; create it first", param_hint="output path")


def check_overrides(overrides: tuple[str, ...]) -> None:
    bad = [text for text in overrides if "=" not in text]
    if bad:
        raise click.UsageError(f"expected key=value overrides after the data argument, got {bad}")


def secondary_process() -> bool:
    """True on the processes of a multi-process run other than rank 0 (which alone prints errors)."""
    return under_torchrun() and os.environ.get("RANK", "0") != "0"


def argv_without_nproc(ctx: click.Context) -> list[str]:
    """The command's arguments rebuilt from its parsed parameters, minus ``--nproc`` (for the torchrun re-run)."""
    argv: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "nproc" or value is None or value is False or value == ():
            continue
        if isinstance(param, click.Argument):
            argv += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
        elif getattr(param, "is_flag", False):
            argv.append(param.opts[0])
        else:
            argv += [param.opts[0], str(value)]
    names, level = [], ctx
    while level.parent is not None:  # "vision train", however the root command was started
        names.append(level.info_name)
        level = level.parent
    return [*reversed(names), *argv]


def relaunch_with_nproc(nproc: int) -> None:
    """With ``--nproc N > 1`` outside torchrun: run this same command in N processes and exit with their status."""
    if nproc > 1 and not under_torchrun():
        raise SystemExit(launch_with_torchrun(nproc, argv_without_nproc(click.get_current_context())))


def run_training(work: Callable[[], Any]) -> Any:
    """Run ``work()`` (a recipe's training) turning user errors into one line and interruptions into their exit code."""
    try:
        return work()
    except TrainingInterrupted as stop:
        if not secondary_process():
            click.echo(str(stop), err=True)
        raise SystemExit(stop.exit_code) from None
    except USER_ERRORS as err:
        if secondary_process():
            raise SystemExit(1) from None  # every process failed the same way; the first one says why
        raise click.ClickException(str(err)) from err
    finally:
        shutdown_distributed()


_TRAINING_OPTIONS = [
    click.option("--config", "config_name", help="Recipe config: a shipped name or a TOML file."),
    click.option("--epochs", type=float, help="Passes over the training data."),
    click.option("--max-steps", type=int, help="Optimizer steps (instead of epochs)."),
    click.option("--batch-size", type=int, help="Global batch size (all processes together)."),
    click.option("--lr", type=float, help="Peak learning rate."),
    click.option(
        "--out", "out_dir", type=click.Path(file_okay=False), help="Run directory for checkpoints, logs and the model."
    ),
    click.option(
        "--resume", type=click.Path(exists=True, file_okay=False), help="Continue from a checkpoint or run directory."
    ),
    click.option(
        "--nproc", type=click.IntRange(min=1), default=1, show_default=True,
        help="Processes on this machine (runs torchrun for you).",
    ),  # fmt: skip
    click.option("--overwrite", is_flag=True, help="Replace the run already in --out (its run files are deleted)."),
    click.option(
        "--precision", type=click.Choice(["auto", "fp32", "bf16"]), help="Numeric precision [config default]."
    ),
    click.option("--skip-bad", is_flag=True, help="Skip malformed input (counted) instead of stopping."),
    click.option("--quiet", is_flag=True, help="No summary or progress output; the final result line stays."),
]


def training_options(command: Callable) -> Callable:
    """Decorate a click command with the options every ``train`` command has."""
    for option in reversed(_TRAINING_OPTIONS):
        command = option(command)
    return command


def apply_training_options(config: TrainingConfig, options: dict[str, Any]) -> TrainingConfig:
    """The training config with the command-line options on top (they win over the recipe and its overrides)."""
    direct = ("out_dir", "batch_size", "lr", "resume", "precision")
    changes = {name: options[name] for name in direct if options[name] is not None}
    for flag in ("overwrite", "quiet"):
        if options[flag]:
            changes[flag] = True
    if options["epochs"] is not None:
        changes.update(epochs=options["epochs"], max_steps=None)
    if options["max_steps"] is not None:
        changes["max_steps"] = options["max_steps"]
    return config.replace(**changes)
