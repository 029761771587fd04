"""The run directory: chosen once per run, never shared by two runs by accident.

A run writes ``metrics.jsonl``, ``checkpoints/``, ``model/``, ``best_model/``, ``curves.png`` and
whatever the recipe adds (``recipe.json``, ``split.json``) into one directory:

- with no ``out_dir``, a new one, ``runs/<run name>-<YYYYmmdd-HHMMSS>``;
- with ``resume`` and no ``out_dir``, the resumed run's own directory (training continues there);
- a directory that already holds a run is refused unless ``overwrite`` (its run files are then
  deleted first; other files stay) or it is the run being resumed.

Under torchrun the main process decides and the others receive its answer, so every rank uses
the same directory (and raises the same error).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .config import TrainingConfig
from .distributed import DistributedContext, gather_objects

__all__ = [
    "RUN_FILES",
    "RunDirectoryError",
    "default_run_directory",
    "holds_run",
    "prepare_run_directory",
    "run_of",
    "run_of_model",
]

# What a run writes; any of them marks a directory as holding a run.
RUN_FILES = ("metrics.jsonl", "checkpoints", "model", "best_model", "curves.png", "recipe.json", "split.json")


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (it holds another run)."""


def holds_run(directory: str | Path) -> bool:
    """True when ``directory`` holds any file a training run writes."""
    directory = Path(directory)
    return directory.is_dir() and any((directory / name).exists() for name in RUN_FILES)


def run_of(checkpoint_or_run: str | Path) -> Path:
    """The run directory of a checkpoint (``RUN/checkpoints/step-N`` or ``RUN/checkpoints/latest``) or of a run."""
    path = Path(checkpoint_or_run)
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return path


def run_of_model(model_dir: str | Path) -> Path | None:
    """The run of a model directory (``RUN/model``, ``RUN/best_model``, a checkpoint or its ``ema/``), or None."""
    path = Path(model_dir)
    if path.name == "ema":
        path = path.parent
    if path.parent.name == "checkpoints":
        return path.parent.parent
    if path.name in ("model", "best_model") and holds_run(path.parent):
        return path.parent
    return None


def default_run_directory(run_name: str, root: str | Path = "runs") -> Path:
    """``root/<run_name>-<timestamp>``, with a ``-2``, ``-3``... suffix if that exists already."""
    stem = f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, number = Path(root) / stem, 1
    while candidate.exists():
        number += 1
        candidate = Path(root) / f"{stem}-{number}"
    return candidate


def _choose(config: TrainingConfig, run_name: str) -> Path:
    """The directory for this run, checked (and cleared when ``overwrite``); raises RunDirectoryError."""
    resumed = run_of(config.resume).resolve() if config.resume else None
    if config.out_dir is None:
        return resumed if resumed is not None else default_run_directory(run_name)
    out = Path(config.out_dir)
    if resumed is not None and out.resolve() == resumed:
        return out
    if holds_run(out):
        if not config.overwrite:
            hint = "continue it with resume (--resume), " if resumed is None else ""
            raise RunDirectoryError(
                f"{out} already holds a training run; {hint}choose another out_dir (--out), "
                "or replace it with overwrite (--overwrite)"
            )
        for name in RUN_FILES:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    return out


def prepare_run_directory(
    config: TrainingConfig, run_name: str = "run", context: DistributedContext | None = None
) -> TrainingConfig:
    """Pick and create the run directory; returns ``config`` with ``out_dir`` set to it.

    ``train`` calls it once at the start of a run; recipes hand the files they want in the run
    directory (``recipe.json``, ``split.json``) to ``train`` instead of writing them earlier.

    Args:
        config: the run settings (``out_dir``, ``resume``, ``overwrite``).
        run_name: names the automatic directory, e.g. the recipe name.
        context: process placement; None = this process alone.

    Raises:
        RunDirectoryError: the directory holds another run (on every rank).
    """
    context = context or DistributedContext()
    answer: tuple[str, str]
    if context.is_main:
        try:
            out = _choose(config, run_name)
            out.mkdir(parents=True, exist_ok=True)
            answer = ("ok", str(out))
        except RunDirectoryError as err:
            answer = ("error", str(err))
    else:
        answer = ("", "")
    status, text = gather_objects(answer, context)[0]
    if status == "error":
        raise RunDirectoryError(text)
    return config.replace(out_dir=text)
