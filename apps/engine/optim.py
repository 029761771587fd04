"""AdamW with decoupled weight decay on matrices only, a linear-warmup cosine schedule, and the
optimizer step that every training loop here shares (:func:`train_step`).

Weight decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") is applied to
weight matrices and convolution kernels only: parameters with fewer than two dimensions (biases,
norm scales) and the parameters a model names in its timm-style ``no_weight_decay()`` (a core
``PretrainedModel`` names its token and learned position embeddings; a ViT adds its class token)
are not decayed, as in ViT/DeiT (timm) training code.

For fine-tuning, :func:`build_optimizer` also gives the backbone a lower learning rate than the
head: layer-wise decay (as timm's ``--layer-decay``, from BEiT, Bao et al. 2022) scales the
learning rate of layer group ``i`` of ``L + 2`` by ``decay ** (L + 1 - i)``, where group 0 holds
the embeddings, group ``i`` the ``i``-th block (the final norm joins the last block, as timm's ViT
``group_matcher`` has it) and group ``L + 1`` the task head (:func:`layer_ids`). And
:func:`training_schedule` can hold the backbone still for the first N steps (learning rate 0, so
AdamW leaves its weights exactly as they are; it warms up again from step N) while the head trains.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polyformer.core import head_parameter_names

__all__ = [
    "build_adamw",
    "build_optimizer",
    "decay_parameter_groups",
    "layer_ids",
    "parameter_groups",
    "train_step",
    "training_schedule",
    "warmup_cosine_factor",
    "warmup_cosine_schedule",
]

# "blocks.3." (timm), "encoder.layers.3." (core stacks), "module.encoder.layers.3." (a DDP wrapper)
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|blocks)\.(\d+)\.")


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
    return build_optimizer(model, lr, weight_decay, betas)


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """The layer group of every trainable parameter, for layer-wise learning-rate decay.

    Group ``i + 1`` is block ``i`` (a name with ``layers.i.`` or ``blocks.i.``); group ``L + 1``
    is the head (:func:`~polyformer.core.head_parameter_names`); the rest is group 0 when it comes
    before the first block in ``named_parameters()`` order (embeddings, class token) and group
    ``L`` when it comes after the blocks (the final norm, which timm also puts in the last block's
    group).

    Returns:
        ``(ids, L)``: parameter name -> group, and the number of blocks L.

    Raises:
        ValueError: the model has no numbered blocks.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    head = head_parameter_names(model)
    indices = {name: int(match.group(1)) for name, _ in named if (match := _LAYER_INDEX.search(name))}
    if not indices:
        raise ValueError(
            f"{type(model).__name__} has no numbered blocks ('layers.N.' or 'blocks.N.' in its parameter names), "
            "so layer-wise learning-rate decay cannot be applied"
        )
    depth = max(indices.values()) + 1
    ids, seen_block = {}, False
    for name, _ in named:
        if name in head:
            ids[name] = depth + 1
        elif name in indices:
            ids[name], seen_block = indices[name] + 1, True
        else:
            ids[name] = depth if seen_block else 0
    return ids, depth


def parameter_groups(
    model: nn.Module, weight_decay: float, layer_decay: float | None = None, split_head: bool = False
) -> list[dict]:
    """AdamW param groups: decayed or not (:func:`decay_parameter_groups`), and optionally by layer and head.

    Args:
        model: the model (unwrapped, or FSDP-sharded in place).
        weight_decay: decay of the matrices.
        layer_decay: None = one learning rate for all; else the learning rate of layer group ``i``
            (:func:`layer_ids`) is scaled by ``layer_decay ** (L + 1 - i)``, 1 for the head.
        split_head: keep the head's parameters in groups of their own (to freeze the backbone).

    Returns:
        Non-empty groups, each with ``params``, ``weight_decay``, ``lr_scale`` (multiplies the
        learning rate), ``head`` (True for the head's groups) and a ``group`` name for logs.
    """
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if split_head and not head_parameter_names(model):
        raise ValueError(
            f"{type(model).__name__} declares no task head (head_prefixes), so its backbone cannot be frozen apart "
            "from a head"
        )
    if layer_decay is None and not split_head:
        return [dict(group, lr_scale=1.0, head=False) for group in decay_parameter_groups(model, weight_decay)]
    head = head_parameter_names(model)
    ids, depth = layer_ids(model) if layer_decay is not None else ({}, 0)
    names = {id(p): name for name, p in model.named_parameters()}
    grouped: dict[tuple[int, bool, str], list[nn.Parameter]] = {}
    for base in decay_parameter_groups(model, weight_decay):
        for parameter in base["params"]:
            name = names[id(parameter)]
            is_head = name in head
            layer = ids.get(name, depth + 1 if is_head else 0)
            grouped.setdefault((layer, is_head, base["group"]), []).append(parameter)
    groups = []
    for (layer, is_head, kind), params in sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1])):
        scale = 1.0 if layer_decay is None else layer_decay ** (depth + 1 - layer)
        where = "head" if is_head else (f"layer{layer}" if layer_decay is not None else "backbone")
        groups.append({
            "params": params, "weight_decay": weight_decay if kind == "decay" else 0.0, "lr_scale": scale,
            "head": is_head, "group": f"{where}/{kind}",
        })  # fmt: skip
    return groups


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    layer_decay: float | None = None,
    split_head: bool = False,
) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters (:func:`parameter_groups`), each group at ``lr * lr_scale``."""
    groups = parameter_groups(model, weight_decay, layer_decay, split_head)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear from 1/(warmup+1) to 1 over warmup, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _WarmupCosine:
    """The schedule as a callable object: LambdaLR saves its plain-number attributes in ``state_dict``.

    Before step ``start`` the factor is 0 (a frozen group); from there the warmup and the cosine
    run over the remaining ``total_steps - start`` steps.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float, start: int = 0):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio
        self.start = start

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 0.0
        return warmup_cosine_factor(step - self.start, self.warmup_steps, self.total_steps - self.start, self.min_ratio)


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay, stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(warmup_steps, total_steps, min_ratio))


def training_schedule(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.0,
    freeze_backbone_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup-cosine for every group; with ``freeze_backbone_steps`` = N, the groups that are not
    the head (``group["head"]`` False) get learning rate 0 for the first N steps and then their own
    warmup and cosine over the steps that remain. N >= ``total_steps`` trains the head alone."""
    if freeze_backbone_steps < 0:
        raise ValueError(f"freeze_backbone_steps must be >= 0, got {freeze_backbone_steps}")
    if freeze_backbone_steps and not any(group.get("head") for group in optimizer.param_groups):
        raise ValueError("freeze_backbone_steps needs an optimizer whose head is in groups of its own (split_head)")
    schedules = [
        _WarmupCosine(warmup_steps, total_steps, min_ratio, 0 if group.get("head") else freeze_backbone_steps)
        for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)


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
        ``loss`` (mean over the micro-batches), ``lr`` (the largest of the groups', used by this step)
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
    lr = max(group["lr"] for group in optimizer.param_groups)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    return {"loss": loss_mean, "lr": lr, "grad_norm": grad_norm}
