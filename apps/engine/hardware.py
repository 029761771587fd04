"""What this machine offers: CPU model, thread count, native bf16 and measured matmul speed.

Whether bf16 is *native* decides the precision ``auto`` picks. x86 CPUs with AVX512-BF16 or
AMX-BF16 instructions multiply bf16 matrices in hardware (about 4x fp32 here); CPUs with AVX2
only (AMD Zen 2/3, Intel before Sapphire Rapids, most laptops) make PyTorch emulate bf16
products in a scalar loop that is 10-50x *slower* than fp32. The environment variable
``POLYFORMER_NATIVE_BF16=0|1`` overrides the detection, so both paths can be exercised on one
machine (tests do so). oneDNN's own ``ONEDNN_MAX_CPU_ISA`` is honoured too: capped below
``AVX512_CORE_BF16`` (e.g. ``AVX2``), bf16 products are emulated even on a CPU that has the
instructions, so ``ONEDNN_MAX_CPU_ISA=AVX2`` makes a native-bf16 machine behave like an AVX2 one.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path

import torch

__all__ = [
    "BF16_CPU_FLAGS",
    "NATIVE_BF16_ENV",
    "bf16_is_fast",
    "cpu_flags",
    "cpu_model",
    "machine_summary",
    "matmul_gflops",
    "native_bf16",
]

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
NATIVE_BF16_ENV = "POLYFORMER_NATIVE_BF16"
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which its bf16 kernels are not used.
_ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def _cpuinfo_field(name: str) -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    flags = _cpuinfo_field("flags")
    return set(flags.split()) if flags else set()


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo; the platform's processor string elsewhere)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def _env_override() -> bool | None:
    value = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if value == "":
        return None
    if value in ("0", "1"):
        return value == "1"
    raise ValueError(f"{NATIVE_BF16_ENV} must be 0 or 1 (or unset to detect), got {value!r}")


def native_bf16(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """Whether bf16 matrix products run natively on ``device``, and why this answer.

    Returns:
        ``(native, reason)``; ``reason`` is a short phrase such as ``"CPU has avx512_bf16"``.
    """
    device = torch.device(device)
    override = _env_override()
    if override is not None:
        return override, f"{NATIVE_BF16_ENV}={int(override)}"
    if device.type == "cuda":
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return supported, "GPU supports bf16" if supported else "GPU lacks bf16"
    if device.type != "cpu":
        return False, f"{device.type} device: bf16 not assumed"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if cap in _ONEDNN_ISAS_WITHOUT_BF16:
        return False, f"ONEDNN_MAX_CPU_ISA={cap}: bf16 is emulated"
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
    if found:
        return True, f"CPU has {'/'.join(found)}"
    return False, "CPU lacks avx512_bf16/amx_bf16: bf16 is emulated"


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matrix products run natively (see :func:`native_bf16`)."""
    return native_bf16(device)[0]


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


@functools.cache
def measured_bf16_speed(size: int = 256) -> tuple[float, float]:
    """fp32 and bf16 matmul GFLOP/s on this CPU, measured once per process on small matrices."""
    return matmul_gflops(torch.float32, size, repeats=3), matmul_gflops(torch.bfloat16, size, repeats=3)


def machine_summary() -> str:
    """One line for a benchmark's header: CPU model, threads, native bf16 and torch version."""
    native, reason = native_bf16("cpu")
    return (
        f"CPU: {cpu_model()}; {torch.get_num_threads()} threads; native bf16: {'yes' if native else 'no'} "
        f"({reason}); torch {torch.__version__}"
    )
