"""The training loop and evaluation: plain functions over a small bundle of run state.

``train`` runs on one process or, unchanged, under ``torchrun`` (DDP, or FSDP2 with
``fsdp=True``). It first picks the run directory (a new ``runs/<run name>-<timestamp>``, the
resumed run's, or ``out_dir``; a directory holding another run is refused unless ``overwrite``,
see :mod:`.run_dir`) and prints what the run will do. Each optimizer step takes ``grad_accum``
micro-batches per process, clips the global gradient norm, steps AdamW and the warmup-cosine
schedule and updates the EMA. Every ``checkpoint_every`` steps (by default each epoch or each
10% of the run, whichever is sooner) and at the end it evaluates (if given validation data) and
writes a checkpoint; ``resume`` continues from one exactly: same weights as a run never
interrupted. At the end the final model goes to ``model/`` and the best checkpoint's (by the
validation metric) to ``best_model/``.

A non-finite loss or gradient norm raises :class:`NonFiniteLossError` before the weights are
touched, so the last checkpoint on disk is the last good state. SIGINT (Ctrl-C) and SIGTERM
finish the current step, save a checkpoint and raise :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checkpoint import (
    CheckpointManager,
    Resumable,
    export_model_directory,
    find_resumable,
    load_model_weights,
    load_training_state,
    set_aside,
    write_model_directory,
)
from .config import TrainingConfig
from .distributed import DistributedContext, all_reduce_sum, init_distributed, wrap_model
from .ema import ModelEMA
from .interrupt import StopRequests, TrainingInterrupted
from .optim import build_optimizer, train_step, training_schedule
from .precision import PrecisionChoice, autocast, choose_precision
from .randomness import seed_everything
from .run_dir import prepare_run_directory
from .run_log import MetricsLog, ProgressReporter, plot_training_curves
from .sampling import ReproducibleSamples, ResumableBatchSampler, seeded_global_generators
from .state import restore_run_state, save_run_checkpoint
from .tasks import TrainingTask, plain_value, to_device

__all__ = ["NonFiniteLossError", "TrainResult", "TrainingInterrupted", "checkpoint_interval", "evaluate", "train"]


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the weights of that step were not applied.

    Attributes:
        step: the optimizer step (1-based) that failed.
        last_checkpoint: the newest checkpoint on disk, or None.
    """

    def __init__(self, step: int, what: str, value: float, last_checkpoint: Path | None):
        self.step, self.last_checkpoint = step, last_checkpoint
        where = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
        super().__init__(
            f"{what} is {value} at step {step}; training stopped without applying that step ({where}). "
            "Lower the learning rate, use fp32, or check the data, then resume from the checkpoint."
        )


@dataclass
class TrainResult:
    """What a finished run produced."""

    steps: int  # optimizer steps done
    metrics: dict[str, Any]  # last validation metrics (empty without validation data)
    out_dir: Path  # the run directory
    model_dir: Path | None  # <out_dir>/model: final weights (EMA weights when EMA is on); None off the main process
    last_checkpoint: Path | None  # newest checkpoint
    best_checkpoint: Path | None  # best checkpoint by the validation metric
    best_model_dir: Path | None = None  # <out_dir>/best_model: the best checkpoint's model (EMA when EMA is on)


@dataclass
class _Run:
    """Mutable state of one training run, shared by the functions below."""

    config: TrainingConfig
    context: DistributedContext
    task: TrainingTask
    model: nn.Module  # the bare model
    module: nn.Module  # what is called in training: the model, DDP around it, or FSDP-sharded
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: ResumableBatchSampler
    loader: DataLoader
    precision: PrecisionChoice
    total_steps: int
    manager: CheckpointManager
    log: MetricsLog
    checkpoint_every: int = 0  # steps between checkpoints; 0 = only at the end
    stops: StopRequests | None = None
    resumed_from: Path | None = None
    ema: ModelEMA | None = None
    eval_data: Dataset | None = None
    collate_fn: Callable | None = None
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    last_metrics: dict[str, Any] = field(default_factory=dict)
    last_eval_step: int = -1
    window: list[dict[str, float]] = field(default_factory=list)
    window_start: float = 0.0


def train(
    model: nn.Module,
    task: TrainingTask,
    train_data: Dataset,
    config: TrainingConfig,
    eval_data: Dataset | None = None,
    collate_fn: Callable | None = None,
    on_step_end: Callable[[int, dict[str, float]], None] | None = None,
    echo: Callable[[str], None] = print,
    run_name: str = "run",
    run_files: Mapping[str, str] | None = None,
    summary: Sequence[str] = (),
) -> TrainResult:
    """Train ``model`` on ``train_data`` as ``config`` says; see the module docstring.

    Args:
        model: the bare model (a core ``PretrainedModel`` to get loadable checkpoints), freshly
            built on every process with the same seed.
        task: loss and metrics (e.g. :class:`~polyformer.apps.engine.tasks.ClassificationTask`).
        train_data: a map-style dataset; random transforms are seeded per sample and epoch.
        config: the run settings.
        eval_data: validation data, evaluated at checkpoints and at the end.
        collate_fn: DataLoader collate function for both datasets.
        on_step_end: called after each optimizer step with the step and its local values.
        echo: where the run summary and progress lines go (nothing is shown with ``config.quiet``).
        run_name: names the automatic run directory (``runs/<run_name>-<timestamp>``), e.g. the recipe.
        run_files: file name -> text written into the run directory once it is chosen (e.g.
            ``recipe.json``, ``split.json``), so that a refused directory gets nothing.
        summary: the recipe's lines for the run-start summary (data, model, augmentation); the
            engine adds the run directory, steps, batch, precision, checkpoints and validation.

    Returns:
        Paths and final metrics of the run.

    Raises:
        RunDirectoryError: ``out_dir`` holds another run (and neither ``overwrite`` nor ``resume`` allows it).
        NonFiniteLossError: the loss or gradient norm became NaN/inf.
        TrainingInterrupted: SIGINT or SIGTERM arrived; a checkpoint of the last step was saved.
    """
    context = init_distributed()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    resume = find_resumable(config.resume) if config.resume else None  # fails before anything is written
    resume_dir = resume.checkpoint if resume is not None else None
    config = prepare_run_directory(config, run_name, context)
    if context.is_main:
        for name, text in (run_files or {}).items():
            (Path(config.out_dir) / name).write_text(text)
    run = _start_run(model, task, train_data, config, context, eval_data, collate_fn, resume_dir)
    if resume is not None and resume.damaged and context.is_main:  # every rank has read its checkpoint by now
        _set_aside_damaged(run, resume, echo)
    quiet = config.quiet or not context.is_main
    if not quiet:
        for line in [*summary, *_run_summary(run, len(train_data))]:
            echo(line)
    progress = ProgressReporter(run.total_steps, run.step, mode="quiet" if quiet else None, echo=echo)
    try:
        with StopRequests() as run.stops:
            _train_steps(run, progress, on_step_end)
    except (NonFiniteLossError, TrainingInterrupted) as error:
        run.log.write("stopped", step=error.step, reason=str(error))
        raise
    finally:
        progress.close()
    return _finish(run, progress)


def _set_aside_damaged(run: _Run, resume: Resumable, echo: Callable[[str], None]) -> None:
    """Rename the damaged checkpoints passed over on resume, and say so (always) and log it."""
    for checkpoint, problems in resume.damaged:
        moved = set_aside(checkpoint)
        echo(f"warning: checkpoint {checkpoint} is damaged ({'; '.join(problems)}); set aside as {moved.name}")
        run.log.write("damaged_checkpoint", step=run.step, checkpoint=str(checkpoint), problems=problems)
    echo(f"warning: resuming from {resume.checkpoint}, the newest intact checkpoint")


def checkpoint_interval(config: TrainingConfig, steps_per_epoch: int, total_steps: int) -> int:
    """Steps between checkpoints: ``config.checkpoint_every``, or by default each epoch or each 10%
    of the run, whichever is sooner (at least 1); 0 = only at the end."""
    if config.checkpoint_every is not None:
        return config.checkpoint_every
    return max(1, min(steps_per_epoch, math.ceil(total_steps / 10)))


def _best_metric(config: TrainingConfig, task: TrainingTask) -> tuple[str | None, str]:
    """The validation metric that picks the best model: the config's, else the task's default."""
    if config.best_metric is not None:
        return config.best_metric, config.best_mode
    default = getattr(task, "default_best", None)
    return default if default is not None else (None, config.best_mode)


def _fine_tuning_summary(config: TrainingConfig, total_steps: int) -> str:
    """The layer-decay and frozen-backbone part of the optimizer line ("" when neither is on)."""
    text = ""
    if config.layer_decay is not None:
        text += f", layer decay {config.layer_decay:g} (lr x {config.layer_decay:g}^(depth+1-layer), head at lr)"
    steps = config.freeze_backbone_steps
    if steps >= total_steps:
        text += "; backbone frozen for the whole run (only the head trains: a linear probe)"
    elif steps:
        text += f"; backbone frozen for the first {steps} steps (head only), then warmed up again"
    return text


def _run_summary(run: _Run, train_items: int) -> list[str]:
    """What the engine will do, in a few lines (the recipe adds data, model and augmentation)."""
    config, context = run.config, run.context
    out = Path(config.out_dir)
    if run.resumed_from is not None:
        where = f"{out} (resuming at step {run.step} from {run.resumed_from})"
    else:
        where = f"{out} (new run)"
    epochs = run.total_steps / run.sampler.steps_per_epoch
    lines = [
        f"run: {where}",
        f"steps: {run.total_steps} ({epochs:.3g} epochs of {run.sampler.steps_per_epoch} steps over "
        f"{train_items} training items); batch {config.batch_size} = {context.world_size} process(es) x "
        f"{config.grad_accum} micro-batch(es) x {run.sampler.micro_batch}",
        f"optimizer: AdamW lr {config.lr:g}, weight decay {config.weight_decay:g}, warmup-cosine"
        + _fine_tuning_summary(config, run.total_steps)
        + f"; precision {run.precision.describe()}"
        + (f"; EMA {config.ema_decay:g}" if config.ema_decay else ""),
    ]
    checkpoints = f"every {run.checkpoint_every} steps and at the end" if run.checkpoint_every else "at the end"
    line = f"checkpoints: {checkpoints}, last {config.keep_last} kept"
    if run.eval_data is not None:
        every = f"every {config.eval_every} steps" if config.eval_every else "at each checkpoint"
        line += f"; validation {every} on {len(run.eval_data)} items"
        if run.manager.best_metric:
            line += f"; best model by {run.manager.best_metric} ({run.manager.best_mode}) -> {out / 'best_model'}"
    else:
        line += "; no validation data"
    lines.append(line)
    return lines


def _start_run(model, task, train_data, config, context, eval_data, collate_fn, resume_dir) -> _Run:
    state = load_training_state(resume_dir) if resume_dir is not None else None
    if resume_dir is not None:
        load_model_weights(model, resume_dir)  # before wrapping: DDP broadcasts, FSDP shards these
    seed_everything(config.seed + context.rank)
    module = wrap_model(model, context, config.fsdp)
    optimizer = build_optimizer(
        model, config.lr, config.weight_decay, config.betas, config.layer_decay,
        split_head=config.freeze_backbone_steps > 0,
    )  # fmt: skip
    sampler = ResumableBatchSampler(
        len(train_data), config.batch_size, config.grad_accum, context.rank, context.world_size, config.seed,
        keys_with_epoch=True, lengths=getattr(train_data, "sample_lengths", None), bucket_steps=config.bucket_steps,
    )  # fmt: skip
    total = config.max_steps or max(1, math.ceil(config.epochs * sampler.steps_per_epoch))
    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_fraction * total)
    loader = DataLoader(
        ReproducibleSamples(train_data, config.seed),
        batch_sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched
        persistent_workers=config.num_workers > 0,
        pin_memory=context.device.type == "cuda",
    )
    out = Path(config.out_dir)
    best_metric, best_mode = _best_metric(config, task)
    run = _Run(
        config=config, context=context, task=task, model=model, module=module, optimizer=optimizer,
        scheduler=training_schedule(optimizer, warmup, total, config.min_lr_ratio, config.freeze_backbone_steps),
        sampler=sampler, loader=loader,
        precision=choose_precision(config.precision, context.device), total_steps=total,
        manager=CheckpointManager(out / "checkpoints", config.keep_last, best_metric, best_mode),
        log=MetricsLog(out / "metrics.jsonl" if context.is_main else None),
        ema=ModelEMA(model, config.ema_decay) if config.ema_decay else None, eval_data=eval_data, collate_fn=collate_fn,
        checkpoint_every=checkpoint_interval(config, sampler.steps_per_epoch, total), resumed_from=resume_dir,
    )  # fmt: skip
    if context.is_main:
        run.manager.remove_leftovers()
    if state is not None:
        restore_run_state(run, state)
        run.log.truncate_after(run.step)
    on_start = getattr(task, "on_start", None)  # a task's own schedule continues where the run is
    if on_start is not None:
        on_start(run.step)
    run.log.write(
        "start", step=run.step, total_steps=total, world_size=context.world_size, precision=str(run.precision),
        resumed_from=str(resume_dir) if resume_dir else None, config=config.to_dict(),
    )  # fmt: skip
    return run


def _train_steps(run: _Run, progress: ProgressReporter, on_step_end) -> None:
    run.window_start = time.perf_counter()
    while run.step < run.total_steps:
        run.sampler.set_position(run.epoch, run.epoch_step)
        micro_batches = iter(run.loader)
        while run.step < run.total_steps:
            batches = [next(micro_batches) for _ in range(run.config.grad_accum)]
            values = _optimizer_step(run, batches)
            run.step += 1
            run.epoch_step += 1
            epoch_done = run.epoch_step == run.sampler.steps_per_epoch
            if epoch_done:
                run.epoch, run.epoch_step = run.epoch + 1, 0
            progress.advance()
            _after_step(run, values, progress)
            if on_step_end is not None:
                on_step_end(run.step, values)
            _stop_if_requested(run)
            if epoch_done:
                break
        del micro_batches


def _stop_if_requested(run: _Run) -> None:
    """After a step: on SIGINT/SIGTERM (on any process) save a checkpoint and raise TrainingInterrupted."""
    if run.stops is None or run.step == run.total_steps:
        return  # the last step ends the run normally, with its checkpoint
    number = run.stops.requested(run.context)
    if not number:
        return
    path = run.manager.path_for(run.step)
    if run.manager.latest_path() != path:
        path = save_run_checkpoint(run, None)
    raise TrainingInterrupted(run.step, path, Path(run.config.out_dir), number)


def _gradient_sync(run: _Run, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if not run.context.is_distributed or sync:
        if run.config.fsdp and run.context.is_distributed:
            run.module.set_requires_gradient_sync(True)
        return contextlib.nullcontext()
    if run.config.fsdp:
        run.module.set_requires_gradient_sync(False)
        return contextlib.nullcontext()
    return run.module.no_sync()


def _optimizer_step(run: _Run, batches: list) -> dict[str, float]:
    run.module.train()

    def loss_fn(batch) -> torch.Tensor:
        with autocast(run.precision, run.context.device):
            return run.task.loss(run.module, to_device(batch, run.context.device))

    def stop(what: str, value: float) -> None:
        raise NonFiniteLossError(run.step + 1, what, value, run.manager.latest_path())

    values = train_step(
        run.model, run.optimizer, run.scheduler, loss_fn, batches, run.config.clip_grad_norm,
        gradient_sync=lambda last: _gradient_sync(run, last), on_non_finite=stop,
    )  # fmt: skip
    if run.ema is not None:
        run.ema.update(run.model)
    step_values = getattr(run.task, "step_values", None)  # a task's own numbers to log (DETR's class error)
    return {**step_values(), **values} if step_values is not None else values


def _after_step(run: _Run, values: dict[str, float], progress: ProgressReporter) -> None:
    config, step = run.config, run.step
    run.window.append(values)
    is_last = step == run.total_steps
    if step % config.log_every == 0 or is_last:
        _log_training(run, progress)
    checkpoint_due = is_last or (run.checkpoint_every > 0 and step % run.checkpoint_every == 0)
    if config.eval_every is not None:
        eval_due = step % config.eval_every == 0 or is_last
    else:
        eval_due = checkpoint_due
    metrics = None
    if eval_due and run.eval_data is not None:
        metrics = _evaluate_run(run)
        on_eval = getattr(run.task, "on_eval", None)  # a task may react to its validation numbers
        if on_eval is not None:
            on_eval(step, metrics)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        progress.message(f"step {step}: {shown}")
    if checkpoint_due:
        path = save_run_checkpoint(run, metrics)
        progress.message(f"step {step}: checkpoint {path}")


def _log_training(run: _Run, progress: ProgressReporter) -> None:
    """Average the window's losses over processes, then write and show them."""
    count = len(run.window)
    averaged = ["loss", *(k for k in run.window[-1] if k not in ("loss", "lr", "grad_norm"))]
    sums = all_reduce_sum([sum(v.get(k, 0.0) for v in run.window) for k in averaged], run.context)
    elapsed = time.perf_counter() - run.window_start
    values = {
        "loss": sums[0] / (count * run.context.world_size),
        "lr": run.window[-1]["lr"],
        "grad_norm": run.window[-1]["grad_norm"],
        "samples_per_s": count * run.config.batch_size / max(elapsed, 1e-9),
        **{k: total / (count * run.context.world_size) for k, total in zip(averaged[1:], sums[1:])},
    }
    run.log.write("train", step=run.step, epoch=run.epoch, **values)
    progress.report(run.step, values)
    run.window, run.window_start = [], time.perf_counter()


def _evaluate_run(run: _Run) -> dict[str, Any]:
    model = run.ema.module if run.ema is not None else (run.module if run.config.fsdp else run.model)
    batch_size = run.config.eval_batch_size or run.sampler.micro_batch
    with seeded_global_generators(run.config.seed):  # evaluation neither uses nor disturbs the training RNG
        metrics = evaluate(
            model, run.task, run.eval_data, batch_size, run.context, run.precision, run.collate_fn,
            run.config.num_workers, lockstep=run.config.fsdp and run.context.is_distributed,
        )  # fmt: skip
    run.last_metrics, run.last_eval_step = metrics, run.step
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
    run.log.write("eval", step=run.step, epoch=run.epoch, **scalars)
    return metrics


def _finish(run: _Run, progress: ProgressReporter) -> TrainResult:
    if run.eval_data is not None and run.last_eval_step != run.step:
        _evaluate_run(run)  # resumed from the final checkpoint: report its metrics again
    out = Path(run.config.out_dir)
    full_state = _full_model_state(run) if run.config.fsdp and run.context.is_distributed else None
    model_dir = best_dir = None
    best = run.manager.best_path
    if run.context.is_main:
        final = run.ema.module if run.ema is not None else run.model
        model_dir = write_model_directory(final, out / "model", None if run.ema is not None else full_state)
        if best is not None:
            best_dir = export_model_directory(best, out / "best_model", ema=run.ema is not None)
            progress.message(
                f"best model: {best_dir} ({run.manager.best_metric} {run.manager.best_value:.4f} at step "
                f"{run.manager.best_step}); final model: {model_dir}"
            )
        if run.config.plot:
            plot_training_curves(out / "metrics.jsonl", out / "curves.png")
        run.log.write("end", step=run.step, metrics={k: v for k, v in run.last_metrics.items() if isinstance(v, float)})
    run.context.barrier()
    return TrainResult(run.step, run.last_metrics, out, model_dir, run.manager.latest_path(), best, best_dir)


def _full_model_state(run: _Run) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(run.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: TrainingTask,
    data: Dataset,
    batch_size: int = 256,
    context: DistributedContext | None = None,
    precision: str = "fp32",
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    lockstep: bool = False,
) -> dict[str, Any]:
    """Streaming evaluation of ``task``'s metrics over ``data``, split across processes.

    Args:
        model: the model to call (bare, EMA copy, or FSDP module).
        task: provides the metrics and how a batch updates them.
        data: map-style dataset.
        batch_size: per-process batch.
        context: process placement; None = this process alone on the CPU.
        precision: "fp32" or "bf16" (autocast).
        collate_fn: DataLoader collate function.
        num_workers: DataLoader workers.
        lockstep: every process runs the same number of forward passes (needed with FSDP, whose
            forward is a collective); the extra ones are not counted.

    Returns:
        Metric name -> float (scalar metrics) or nested lists (per-class values, matrices).
    """
    context = context or DistributedContext()
    metrics = {name: metric.to(context.device) for name, metric in task.make_metrics().items()}
    indices = list(range(context.rank, len(data), context.world_size))
    loader = DataLoader(data, batch_size=batch_size, sampler=indices, collate_fn=collate_fn, num_workers=num_workers,
                        generator=torch.Generator())  # fmt: skip
    was_training = model.training
    model.eval()
    last = None
    for batch in loader:
        last = to_device(batch, context.device)
        with autocast(precision, context.device):
            task.update_metrics(metrics, model, last)
    if lockstep and last is not None:
        per_rank = math.ceil(math.ceil(len(data) / context.world_size) / batch_size)
        throwaway = {name: metric.to(context.device) for name, metric in task.make_metrics().items()}
        for _ in range(per_rank - len(loader)):
            with autocast(precision, context.device):
                task.update_metrics(throwaway, model, last)
    model.train(was_training)
    results: dict[str, Any] = {}
    for name, metric in metrics.items():
        value = metric.compute()  # a tensor, or a dict of them (torchmetrics' mAP: map, map_50, ...)
        parts = value if isinstance(value, dict) else {name: value}
        results.update({key: plain_value(part) for key, part in parts.items()})
    return results
