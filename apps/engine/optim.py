"""AdamW with decoupled weight decay on matrices only, a linear-warmup cosine schedule, and the
optimizer step that every training loop here shares (:func:`train_step`).

Weight decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") is applied to
weight matrices and convolution kernels only: parameters with fewer than two dimensions (biases,
norm scales) and the parameters a model names in its timm-style ``no_weight_decay()`` (a core
``PretrainedModel`` names its token and learned position embeddings; a ViT adds its class token)
are not decayed, as in ViT/DeiT (timm) training code.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["build_adamw", "decay_parameter_groups", "train_step", "warmup_cosine_factor", "warmup_cosine_schedule"]


def _no_weight_decay_names(model: nn.Module) -> set[str]:
    """The model's own ``no_weight_decay()`` names; a DDP/DataParallel wrapper's inner model's, under ``module.``."""
    if hasattr(model, "no_weight_decay"):
        return set(model.no_weight_decay())
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and hasattr(inner, "no_weight_decay"):
        return {f"module.{name}" for name in inner.no_weight_decay()}
    return set()


def decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed AdamW group.

    Not decayed: parameters with fewer than two dimensions (biases, norm scales, layer scales)
    and those named by the model's timm-style ``no_weight_decay()`` (for a core
    ``PretrainedModel``: its embeddings, plus whatever a subclass adds). A module without that
    method gets only the first rule. A tied parameter is exempt when any of its names is.

    Args:
        model: the model (unwrapped, or FSDP-sharded in place: the names are the same).
        weight_decay: decay of the first group.

    Returns:
        Up to two param groups (empty ones are dropped), each with a ``group`` name for logs.
    """
    exempt = _no_weight_decay_names(model)
    exempt_ids = {id(p) for name, p in model.named_parameters(remove_duplicate=False) if name in exempt}
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            decayed = parameter.ndim >= 2 and id(parameter) not in exempt_ids
            (decay if decayed else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "group": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group": "no_decay"},
    ]
    return [group for group in groups if group["params"]]


def build_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters, decaying matrices only."""
    groups = decay_parameter_groups(model, weight_decay)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear from 1/(warmup+1) to 1 over warmup, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _WarmupCosine:
    """The schedule as a callable object: LambdaLR saves its plain-number attributes in ``state_dict``."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.warmup_steps, self.total_steps, self.min_ratio)


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay, stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(warmup_steps, total_steps, min_ratio))


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_fn: Callable[[Any], Tensor],
    micro_batches: Sequence[Any],
    clip_grad_norm: float | None = None,
    gradient_sync: Callable[[bool], contextlib.AbstractContextManager] | None = None,
    on_non_finite: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """One optimizer step: forward and backward of each micro-batch, clip, step, schedule, clear.

    The gradients of the micro-batches are averaged (each loss is divided by their number).
    A NaN or infinite mean loss or gradient norm clears the gradients and stops before the
    weights or the schedule are touched.

    Args:
        model: the bare model, whose gradients are clipped (``loss_fn`` may call a wrapper of it).
        optimizer: stepped once.
        scheduler: stepped once after the optimizer; None keeps the learning rate.
        loss_fn: micro-batch -> scalar loss to minimise (the forward pass, under autocast if wanted).
        micro_batches: this step's micro-batches.
        clip_grad_norm: clip the global gradient norm to this; None only measures it.
        gradient_sync: ``is_last -> context`` entered around each micro-batch's forward and
            backward (to skip DDP's all-reduce on all but the last one).
        on_non_finite: called with ``(what, value)`` for a non-finite loss or gradient norm, after
            the gradients are cleared; it should raise. If it returns (or is None),
            ``FloatingPointError`` is raised.

    Returns:
        ``loss`` (mean over the micro-batches), ``lr`` (of the first group, used by this step)
        and ``grad_norm`` (before clipping).
    """
    count, loss_total = len(micro_batches), 0.0
    for index, batch in enumerate(micro_batches):
        with gradient_sync(index == count - 1) if gradient_sync is not None else contextlib.nullcontext():
            loss = loss_fn(batch)
            (loss / count).backward()
        loss_total += loss.detach().float().item()
    parameters = [p for p in model.parameters() if p.grad is not None]
    max_norm = clip_grad_norm if clip_grad_norm is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)  # FSDP: a DTensor
    loss_mean = loss_total / count
    for what, value in (("the training loss", loss_mean), ("the gradient norm", grad_norm)):
        if not math.isfinite(value):
            optimizer.zero_grad(set_to_none=True)
            if on_non_finite is not None:
                on_non_finite(what, value)
            raise FloatingPointError(f"{what} is {value}; the step was not applied")
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    return {"loss": loss_mean, "lr": lr, "grad_norm": grad_norm}
