"""Numeric precision of training and evaluation: fp32, or bf16 autocast where it is fast.

bf16 autocast keeps fp32 master weights and optimizer state and runs matrix products in
bfloat16; it needs no loss scaling. "auto" chooses it on CUDA GPUs with bf16 and on CPUs with
AVX512-BF16 or AMX instructions.
"""

from __future__ import annotations

import contextlib

import torch

from polyformer.apps.engine.hardware import bf16_is_fast

__all__ = ["autocast", "resolve_precision"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"`` for ``precision`` in auto | fp32 | bf16 on ``device``."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op context for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
