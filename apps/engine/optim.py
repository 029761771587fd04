"""AdamW with decoupled weight decay on matrices only, and a linear-warmup cosine schedule.

Weight decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") is applied to
weight matrices and convolution kernels only: biases, norm scales, token and position
embeddings and class tokens are not decayed, as in ViT/DeiT (timm) training code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from polyformer.core import LearnedPositionalEmbedding, LearnedPositionalEmbedding2D

__all__ = ["build_adamw", "decay_parameter_groups", "warmup_cosine_schedule", "warmup_cosine_factor"]

EMBEDDING_MODULES = (nn.Embedding, LearnedPositionalEmbedding, LearnedPositionalEmbedding2D)
NO_DECAY_LEAF_NAMES = ("pos", "position", "cls_token", "class_token", "dist_token", "mask_token", "register")


def _decays(module: nn.Module, leaf_name: str, parameter: nn.Parameter) -> bool:
    if parameter.ndim < 2 or isinstance(module, EMBEDDING_MODULES):
        return False
    return not any(part in leaf_name.lower() for part in NO_DECAY_LEAF_NAMES)


def decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed AdamW group.

    Not decayed: parameters with fewer than two dimensions (biases, norm scales, layer scales),
    parameters of embedding modules (token and learned position embeddings), parameters whose
    own name marks a position embedding or a class/mask/register token, and names listed by a
    timm-style ``model.no_weight_decay()``.

    Args:
        model: the model (unwrapped, or FSDP-sharded in place).
        weight_decay: decay of the first group.

    Returns:
        Up to two param groups (empty ones are dropped), each with a ``group`` name for logs.
    """
    exempt = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay, seen = [], [], set()
    for module_name, module in model.named_modules():
        for leaf_name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            full_name = f"{module_name}.{leaf_name}" if module_name else leaf_name
            decayed = _decays(module, leaf_name, parameter) and full_name not in exempt
            (decay if decayed else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "group": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group": "no_decay"},
    ]
    return [group for group in groups if group["params"]]


def build_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
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
