"""What this machine offers: thread count, bf16 support and measured matmul speed."""

from __future__ import annotations

import time
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matrix products run natively: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 / AMX-BF16 instructions."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    """Measured GFLOP/s of a square matrix product on the CPU (median of ``repeats``)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e9
