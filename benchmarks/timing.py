"""Timing shared by the benchmark scripts: the machine they ran on, interleaved calls, fastest call counts.

Every script prints :func:`prepare`'s line (or :func:`machine_summary`'s) first: the CPU model,
thread count and whether bf16 is native, so a figure is never read without its hardware. bf16
speed rows are measured only where bf16 is native (:func:`bf16_rows`); on a CPU that emulates
bf16 they are skipped with a line saying why, since emulated bf16 is 10-50x slower than fp32 and
says nothing about the code (``POLYFORMER_NATIVE_BF16=1`` runs them anyway).

On a small shared CPU a step's time drifts with whatever else runs and with the allocator's
state, so every script calls its steps in turn, call by call, and keeps each step's fastest
call: slow phases of the machine hit all steps alike and the fastest call is the least
disturbed one. :func:`prepare` also makes malloc keep freed memory (:func:`retain_freed_memory`).
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Callable

import torch

from polyformer.apps.engine.hardware import machine_summary, native_bf16

__all__ = [
    "bf16_rows", "cpu_autocast", "fastest", "machine_summary", "prepare", "retain_freed_memory", "throughput_row",
]  # fmt: skip
# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    With glibc's adaptive defaults, whether a freed tensor of a few MiB goes back to the OS
    depends on the allocation history, and a tensor placed in returned memory pays a page
    fault per 4 KiB page (about 0.25 ms per MiB here). Between processes that made one model's
    timings swing by 30% while another's stayed put. With these settings allocations up to
    ``mmap_threshold`` bytes come from the heap, which keeps up to ``trim_threshold`` bytes
    free, the same for every model in the process (PyTorch's CPU tuning guide gets a similar
    effect from jemalloc or tcmalloc).

    Returns:
        True where glibc accepted the settings; False elsewhere (macOS, musl, Windows).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):
        return False


def prepare(threads: int | None = None) -> str:
    """Set the thread count and the allocator; returns a line describing the machine and set-up."""
    if threads:
        torch.set_num_threads(threads)
    retained = retain_freed_memory()
    return f"{machine_summary()}; malloc retains freed memory: {retained}"


def cpu_autocast(bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU for a bf16 row, nothing for an fp32 one."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def bf16_rows(echo: Callable[[str], None] = print) -> bool:
    """True where bf16 speed rows are worth measuring (bf16 is native); else says why they are skipped."""
    native, why = native_bf16("cpu")
    if not native:
        echo(
            f"bf16 rows skipped: bf16 is emulated on this CPU ({why}), 10-50x slower than fp32 and not comparable "
            "with native figures; POLYFORMER_NATIVE_BF16=1 runs them anyway"
        )
    return native


def fastest(steps: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Seconds of each step's fastest call over ``rounds`` interleaved calls, after ``warmup`` calls each."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def throughput_row(bf16: bool, times: dict[str, float], items: int, unit: str) -> str:
    """A training benchmark's row: items per second of transformers' and our step, and the ratio of their times
    (above 1: ours is faster); ``times`` from :func:`fastest` with keys ``transformers`` and ``polyformer``."""
    rate = {key: items / value for key, value in times.items()}
    return (f"  {'bf16' if bf16 else 'fp32'}: transformers {rate['transformers']:.2f} {unit}/s, polyformer "
            f"{rate['polyformer']:.2f} {unit}/s, ratio {times['transformers'] / times['polyformer']:.2f}x")  # fmt: skip
