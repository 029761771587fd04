"""Saving a running training loop to a checkpoint and putting it back.

The optimizer state is taken with ``torch.distributed.checkpoint.state_dict`` as a full,
parameter-name-keyed dictionary, the same layout on one process, under DDP and under FSDP, so
a checkpoint from any of them resumes in any other. RNG states of all ranks are gathered to
rank 0 and written together; each rank gets its own back on resume.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from .checkpoint import write_checkpoint
from .distributed import gather_objects
from .randomness import capture_rng_state, restore_rng_state

__all__ = ["STATE_FORMAT", "restore_run_state", "save_run_checkpoint"]

STATE_FORMAT = 1
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def save_run_checkpoint(run: Any, metrics: dict[str, Any] | None) -> Path:
    """Write the checkpoint of ``run`` at its current step (a collective: call on every rank).

    Args:
        run: the loop's run state (``polyformer.apps.engine.loop._Run``).
        metrics: validation metrics at this step, if evaluated; they decide the best checkpoint.

    Returns:
        The checkpoint directory.
    """
    run.manager.record(run.step, metrics)
    sharded = run.config.fsdp and run.context.is_distributed
    full_model_state = get_model_state_dict(run.model, options=FULL) if sharded else None
    optimizer_state = get_optimizer_state_dict(run.model, run.optimizer, options=FULL)
    rng_states = gather_objects(capture_rng_state(), run.context)
    path = run.manager.path_for(run.step)
    if run.context.is_main:
        training_state = {
            "format": STATE_FORMAT,
            "step": run.step,
            "epoch": run.epoch,
            "epoch_step": run.epoch_step,
            "optimizer": optimizer_state,
            "scheduler": run.scheduler.state_dict(),
            "rng": rng_states,
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "best": run.manager.state_dict(),
            "world_size": run.context.world_size,
            "batch_size": run.config.batch_size,
            "seed": run.config.seed,
        }
        scalars = {k: v for k, v in (metrics or {}).items() if isinstance(v, float)}
        summary = {"step": run.step, "epoch": run.epoch, "metrics": scalars, "best": run.manager.state_dict()}
        ema_model = run.ema.module if run.ema is not None else None
        write_checkpoint(path, run.model, training_state, summary, full_model_state, ema_model)
        run.manager.after_save(run.step)
    run.context.barrier()
    return path


def restore_run_state(run: Any, state: dict[str, Any]) -> None:
    """Put a checkpoint's training state into a freshly built ``run`` (model weights already loaded).

    Raises:
        ValueError: the checkpoint cannot continue this run exactly (other batch size or seed, unknown format).
    """
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"training state format {state.get('format')!r} is not supported (expected {STATE_FORMAT})")
    for name in ("batch_size", "seed"):
        if state[name] != getattr(run.config, name):
            raise ValueError(
                f"the checkpoint was trained with {name}={state[name]}, this run has {getattr(run.config, name)}; "
                f"resume with the same {name} (the data order depends on it)"
            )
    set_optimizer_state_dict(
        run.model, run.optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True)
    )
    run.scheduler.load_state_dict(state["scheduler"])
    run.step, run.epoch, run.epoch_step = int(state["step"]), int(state["epoch"]), int(state["epoch_step"])
    run.manager.load_state_dict(state["best"])
    if run.ema is not None:
        if state["ema"] is None:
            warnings.warn("the checkpoint has no EMA weights; the EMA starts from the current weights", stacklevel=2)
        else:
            run.ema.load_state_dict(state["ema"])
    rng_states = state["rng"]
    if len(rng_states) != run.context.world_size:
        warnings.warn(
            f"the checkpoint was written by {len(rng_states)} processes, this run has {run.context.world_size}: "
            "data order is kept, but dropout randomness will differ from an uninterrupted run",
            stacklevel=2,
        )
    restore_rng_state(rng_states[min(run.context.rank, len(rng_states) - 1)])
