"""Checkpoint directories: written atomically, the last K kept plus the best, found again on resume.

A checkpoint ``<run>/checkpoints/step-00001200/`` holds

- ``config.json`` + ``model.safetensors``: the model, loadable with ``from_pretrained`` like any
  model directory;
- ``training_state.pt``: optimizer, scheduler, step, data position, RNG states of every rank,
  EMA weights and best-so-far, as tensors and plain containers only, read back with
  ``torch.load(..., weights_only=True)``;
- ``summary.json``: step and validation metrics, for people and for picking the best;
- ``ema/`` (when EMA is on): the averaged model as a model directory;
- ``checksums.json``: the size and SHA-256 of each of those files, written last.

Each is first written under a temporary name and renamed into place, so a run killed while
saving leaves the previous checkpoints intact. ``checkpoints/latest`` and ``checkpoints/best``
are symbolic links to the newest and the best checkpoint.

Resuming verifies a checkpoint before using it (:func:`find_resumable`): a run folder copied in
part, a full disk or a sync tool can still damage one later. A damaged newest checkpoint is set
aside (renamed ``damaged-step-...``) and the newest intact one is used instead.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyformer.core.pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedModel, atomic_directory, write_model_files
from polyformer.core.weights import directory_problems, read_safetensors, read_torch_file, write_checksums

__all__ = [
    "TRAINING_STATE_NAME",
    "CheckpointDamagedError",
    "CheckpointManager",
    "Resumable",
    "export_model_directory",
    "find_checkpoints",
    "find_resumable",
    "set_aside",
    "load_model_weights",
    "load_training_state",
    "resolve_checkpoint",
    "write_checkpoint",
    "write_model_directory",
]

TRAINING_STATE_NAME = "training_state.pt"
SUMMARY_NAME = "summary.json"
STEP_PREFIX = "step-"
DAMAGED_PREFIX = "damaged-"


class CheckpointDamagedError(ValueError):
    """No intact checkpoint to resume from: each file found damaged is named with what is wrong."""


def write_model_directory(model: nn.Module, directory: Path, full_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` for ``model`` into ``directory`` (atomically).

    A core ``PretrainedModel`` is saved with its own ``save_pretrained``; any other module gets
    its weights (and its ``config.save`` output, if it has one). Tied copies are written once.

    Args:
        model: a core ``PretrainedModel`` (anything else gets weights only).
        directory: target directory.
        full_state: weights to write instead of ``model.state_dict()`` (gathered from FSDP shards).
    """
    if isinstance(model, PretrainedModel):
        return model.save_pretrained(directory, state=full_state)
    config = getattr(model, "config", None)
    state = full_state if full_state is not None else model.state_dict()
    return write_model_files(directory, state, config if hasattr(config, "save") else None)


def export_model_directory(checkpoint: str | Path, target: str | Path, ema: bool = False) -> Path:
    """Copy the model of ``checkpoint`` (its ``ema/`` copy when ``ema``) to ``target`` as a model directory.

    Used for ``best_model/``: the weights of the best checkpoint, loadable with ``from_pretrained``
    after the checkpoint itself has been pruned. Written atomically.
    """
    source = Path(checkpoint) / "ema" if ema else Path(checkpoint)
    with atomic_directory(Path(target)) as tmp:
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
    return Path(target)


def write_checkpoint(
    directory: Path,
    model: nn.Module,
    training_state: dict[str, Any],
    summary: dict[str, Any],
    full_state: dict[str, torch.Tensor] | None = None,
    ema_model: nn.Module | None = None,
) -> Path:
    """Write one checkpoint directory atomically (see the module docstring for its contents)."""
    with atomic_directory(directory) as tmp:
        write_model_directory(model, tmp, full_state)
        torch.save(training_state, tmp / TRAINING_STATE_NAME)
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=float) + "\n")
        if ema_model is not None:
            write_model_directory(ema_model, tmp / "ema")
        write_checksums(tmp)
    return directory


def load_training_state(directory: str | Path) -> dict[str, Any]:
    """The training state of a checkpoint, loaded with ``weights_only=True``."""
    path = Path(directory) / TRAINING_STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a training checkpoint (expected {TRAINING_STATE_NAME})")
    return read_torch_file(path)


def load_model_weights(model: nn.Module, directory: str | Path) -> None:
    """Load a checkpoint's ``model.safetensors`` into ``model`` (strict, tied copies allowed)."""
    path = Path(directory) / WEIGHTS_NAME
    state = read_safetensors(path)
    if hasattr(model, "load_weights"):
        model.load_weights(state, source=str(path))
    else:
        model.load_state_dict(state)


def find_checkpoints(root: str | Path) -> list[Path]:
    """Complete step checkpoints under ``root``, oldest first (temporary leftovers are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and (p / TRAINING_STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


@dataclass
class Resumable:
    """The checkpoint to resume from, and the newer ones passed over as damaged (path, problems)."""

    checkpoint: Path
    damaged: list[tuple[Path, list[str]]] = field(default_factory=list)


def find_resumable(path: str | Path) -> Resumable:
    """The newest intact checkpoint at ``path`` (a checkpoint, or a run directory).

    Every file of a candidate is verified (against its ``checksums.json``; older checkpoints by
    structure); damaged newer ones are listed in :attr:`Resumable.damaged`. Nothing is changed.

    Raises:
        FileNotFoundError: nothing resumable at ``path``.
        CheckpointDamagedError: ``path`` is a damaged checkpoint, or every checkpoint of the run is damaged.
    """
    path = Path(path)
    if (path / TRAINING_STATE_NAME).is_file():
        candidates = [path]
    else:
        candidates = next((found for root in (path / "checkpoints", path) if (found := find_checkpoints(root))), [])
        candidates.reverse()
    if not candidates:
        raise FileNotFoundError(
            f"no checkpoint to resume in {path}: expected a directory with {TRAINING_STATE_NAME} or a run directory"
        )
    damaged = []
    for candidate in candidates:
        problems = directory_problems(candidate)
        if not problems:
            return Resumable(candidate, damaged)
        damaged.append((candidate, problems))
    lines = [f"  {problem}" for _, problems in damaged for problem in problems]
    where = "it" if len(candidates) == 1 else f"all {len(candidates)} checkpoints"
    hint = "resume from the run directory to use an earlier checkpoint" if candidates == [path] else "start anew"
    raise CheckpointDamagedError(f"cannot resume from {path}: {where} damaged ({hint}):\n" + "\n".join(lines))


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint to resume from: ``path`` itself, or the newest intact one of a run directory.

    Raises:
        FileNotFoundError: nothing resumable at ``path``.
        CheckpointDamagedError: no intact checkpoint there (see :func:`find_resumable`).
    """
    return find_resumable(path).checkpoint


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged step checkpoint to ``damaged-step-...`` (kept for inspection, never resumed or pruned)."""
    target = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    if target.exists():
        shutil.rmtree(target)
    os.replace(checkpoint, target)
    return target


class CheckpointManager:
    """Names, prunes and points at the checkpoints of one run (used on the main process).

    Args:
        root: the run's ``checkpoints`` directory.
        keep_last: step checkpoints to keep besides the best one.
        best_metric: validation metric that ranks checkpoints; None keeps no separate best.
        best_mode: "max" or "min".
    """

    def __init__(self, root: str | Path, keep_last: int = 2, best_metric: str | None = None, best_mode: str = "max"):
        self.root, self.keep_last = Path(root), keep_last
        self.best_metric, self.best_mode = best_metric, best_mode
        self.best_value: float | None = None
        self.best_step: int | None = None

    def path_for(self, step: int) -> Path:
        return self.root / f"{STEP_PREFIX}{step:08d}"

    def record(self, step: int, metrics: dict[str, Any] | None) -> bool:
        """Note the validation metrics of the checkpoint at ``step``; True if it is the new best."""
        if self.best_metric is None or not metrics or self.best_metric not in metrics:
            return False
        value = float(metrics[self.best_metric])
        if self.best_value is None:
            better = True
        else:
            better = value > self.best_value if self.best_mode == "max" else value < self.best_value
        if better:
            self.best_value, self.best_step = value, step
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.best_metric, "value": self.best_value, "step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("metric") == self.best_metric:
            self.best_value, self.best_step = state.get("value"), state.get("step")

    @property
    def best_path(self) -> Path | None:
        return self.path_for(self.best_step) if self.best_step is not None else None

    def latest_path(self) -> Path | None:
        found = find_checkpoints(self.root)
        return found[-1] if found else None

    def after_save(self, step: int) -> None:
        """Point ``latest`` (and ``best``) at the new checkpoint and delete the ones no longer kept."""
        _point(self.root / "latest", self.path_for(step))
        if self.best_step is not None:
            _point(self.root / "best", self.path_for(self.best_step))
        found = find_checkpoints(self.root)
        keep = set(found[-self.keep_last :])
        if self.best_path is not None:
            keep.add(self.best_path)
        for path in found:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def remove_leftovers(self) -> None:
        """Delete temporary directories of saves that a killed run did not finish."""
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.startswith(f".{STEP_PREFIX}") and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)


def _point(link: Path, target: Path) -> None:
    """Atomically make ``link`` a relative symbolic link to ``target`` (skipped where links are unsupported)."""
    tmp = link.with_name(f".{link.name}.tmp")
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(os.path.relpath(target, link.parent))
        os.replace(tmp, link)
    except OSError:
        pass
