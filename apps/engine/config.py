"""Settings of one training run, as a plain dataclass (no torch import).

Recipes fill a :class:`TrainingConfig` from a TOML file plus ``key=value`` overrides; the engine
validates it once here, at the boundary, so the loop can assume sane values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRECISIONS", "TrainingConfig"]

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainingConfig:
    """Everything the training loop needs to know that is not the model, the task or the data."""

    out_dir: str | None = None  # run directory; None = runs/<run name>-<timestamp> (or the resumed run's)
    overwrite: bool = False  # replace the run already in out_dir (otherwise starting there is an error)
    batch_size: int = 64  # global batch per optimizer step (all processes and accumulation steps together)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step on each process
    epochs: float = 1.0  # passes over the training data (used when max_steps is None)
    max_steps: int | None = None  # optimizer steps; overrides epochs
    lr: float = 1e-3  # peak learning rate
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    warmup_steps: int | None = None  # linear warmup steps; None = warmup_fraction of all steps
    warmup_fraction: float = 0.05  # warmup length as a fraction of all steps (when warmup_steps is None)
    weight_decay: float = 0.05  # AdamW decay of matrices; norms, biases and embeddings get none
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    layer_decay: float | None = None  # fine-tuning: block i of L learns at lr * layer_decay ** (L + 1 - i),
    # the head at lr (timm's --layer-decay); None = one learning rate for all
    freeze_backbone_steps: int = 0  # fine-tuning: train only the head for the first N steps (>= all steps:
    # a linear probe); the backbone then warms up from step N
    clip_grad_norm: float | None = 1.0  # clip the global gradient norm to this; None = no clipping
    precision: str = "auto"  # auto (bf16 where fast) | fp32 | bf16
    ema_decay: float | None = None  # keep an exponential moving average of the weights with this decay
    seed: int = 0  # seeds data order, augmentation and dropout
    checkpoint_every: int | None = None  # every N steps and at the end; None = each epoch or 10% of the run
    # (whichever is sooner); 0 = only at the end
    keep_last: int = 2  # step checkpoints kept besides the best one
    eval_every: int | None = None  # evaluate every N steps; None = at each checkpoint and at the end
    best_metric: str | None = None  # validation metric that picks the best checkpoint, e.g. "accuracy"
    best_mode: str = "max"  # max | min: whether a larger best_metric is better
    log_every: int = 10  # write a metrics.jsonl line (and a progress line) every N steps
    quiet: bool = False  # no progress output at all
    num_workers: int = 0  # DataLoader worker processes per training process
    bucket_steps: int = 0  # batch samples of similar length (a dataset with ``sample_lengths``, e.g. speech):
    # each pool of this many steps' samples is sorted by length; 0 = plain shuffle
    threads: int | None = None  # intra-op CPU threads per process; None = torch's default (OMP_NUM_THREADS)
    eval_batch_size: int | None = None  # per-process evaluation batch; None = the training micro-batch
    fsdp: bool = False  # shard parameters, gradients and optimizer state (FSDP2) instead of DDP
    resume: str | None = None  # checkpoint directory (or run directory: its latest checkpoint) to continue
    plot: bool = True  # write curves.png at the end
    extra: dict[str, Any] = field(default_factory=dict)  # recipe-specific values recorded in metrics.jsonl

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # TOML gives a list
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def _problems(self):
        if self.batch_size <= 0 or self.grad_accum <= 0:
            yield f"batch_size ({self.batch_size}) and grad_accum ({self.grad_accum}) must be positive"
        if self.max_steps is None and self.epochs <= 0:
            yield f"epochs must be positive (got {self.epochs}), or set max_steps"
        if self.max_steps is not None and self.max_steps <= 0:
            yield f"max_steps must be positive, got {self.max_steps}"
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            yield f"lr must be positive and min_lr_ratio in [0, 1] (got lr={self.lr}, min_lr_ratio={self.min_lr_ratio})"
        if not 0.0 <= self.warmup_fraction < 1.0 or (self.warmup_steps is not None and self.warmup_steps < 0):
            yield "warmup_fraction must be in [0, 1) and warmup_steps non-negative"
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            yield f"layer_decay must be in (0, 1] or None, got {self.layer_decay}"
        if self.freeze_backbone_steps < 0:
            yield f"freeze_backbone_steps must be >= 0, got {self.freeze_backbone_steps}"
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            yield f"betas must be two numbers in [0, 1), got {self.betas}"
        if self.precision not in PRECISIONS:
            yield f"precision must be one of {PRECISIONS}, got {self.precision!r}"
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            yield f"ema_decay must be in (0, 1), got {self.ema_decay}"
        if self.ema_decay is not None and self.fsdp:
            yield "ema_decay is not supported with fsdp=True (the EMA copy would not be sharded)"
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            yield f"checkpoint_every must be >= 0 (0 = only at the end) or None (auto), got {self.checkpoint_every}"
        if self.out_dir is not None and not str(self.out_dir).strip():
            yield "out_dir must name a directory or be None (automatic)"
        for name in ("eval_every", "eval_batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                yield f"{name} must be positive or None, got {value}"
        if self.keep_last < 1 or self.log_every < 1 or self.num_workers < 0 or self.bucket_steps < 0:
            yield "keep_last and log_every must be at least 1, num_workers and bucket_steps at least 0"
        if self.best_mode not in ("max", "min"):
            yield f"best_mode must be 'max' or 'min', got {self.best_mode!r}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
