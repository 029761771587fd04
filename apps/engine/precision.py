"""Numeric precision of training and evaluation: fp32, or bf16 autocast where it is native.

bf16 autocast keeps fp32 master weights and optimizer state and runs matrix products in
bfloat16; it needs no loss scaling. ``auto`` (the default everywhere) picks it on CUDA GPUs with
bf16 and on CPUs with AVX512-BF16 or AMX instructions, and fp32 elsewhere: on an AVX2-only CPU
PyTorch emulates bf16 products many times slower than fp32. An explicit ``bf16`` there still
runs, after one warning that gives this machine's measured fp32 and bf16 matmul speeds.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from . import hardware

__all__ = ["PrecisionChoice", "autocast", "choose_precision", "resolve_precision"]

_warned: set[str] = set()


class PrecisionChoice(str):
    """A resolved precision (``"fp32"`` or ``"bf16"``) that also says why it was picked."""

    reason: str

    def __new__(cls, value: str, reason: str) -> PrecisionChoice:
        choice = super().__new__(cls, value)
        choice.reason = reason
        return choice

    def describe(self) -> str:
        """E.g. ``"bf16 (auto: CPU has avx512_bf16)"``."""
        return f"{self} ({self.reason})"


def choose_precision(precision: str, device: torch.device | str = "cpu") -> PrecisionChoice:
    """Resolve ``precision`` (auto | fp32 | bf16) on ``device``, with the reason for the choice.

    Raises:
        ValueError: for any other precision name.
    """
    device = torch.device(device)
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    native, why = hardware.native_bf16(device)
    if precision == "auto":
        return PrecisionChoice("bf16" if native else "fp32", f"auto: {why}")
    if precision == "bf16" and not native:
        _warn_emulated_bf16(device, why)
        return PrecisionChoice("bf16", f"requested; {why}, expect it to be slower than fp32")
    return PrecisionChoice(precision, "requested")


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"bf16"`` or ``"fp32"`` for ``precision`` in auto | fp32 | bf16 on ``device``."""
    return choose_precision(precision, device)


def _warn_emulated_bf16(device: torch.device, why: str) -> None:
    """Warn once per process and device type that explicit bf16 runs emulated here."""
    if device.type in _warned:
        return
    _warned.add(device.type)
    speed = ""
    if device.type == "cpu":
        fp32, bf16 = hardware.measured_bf16_speed()
        speed = f" Measured here: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s ({bf16 / fp32:.2f}x)."
    warnings.warn(
        f"precision bf16 was requested but bf16 is not native on this {device.type} ({why}).{speed} "
        "Use precision auto (or fp32) unless you are checking bf16 numerics.",
        RuntimeWarning,
        stacklevel=3,
    )


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op context for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
