"""Time, peak memory and error of attention backends against sequence length (``polyformer bench attention``).

For every backend and sequence length the command runs one (B=1, H, n, Dh) self-attention
call on random fp32 inputs and reports:

- time: the median of ``--repeats`` calls after one warm-up call (forward under no_grad, or
  forward + backward with ``--backward``);
- peak memory: the peak of the bytes torch allocates during one call above what was
  allocated before it (inputs excluded, output included), summed from the allocation and free
  events of ``torch.profiler`` with ``profile_memory=True`` (the CPU analogue of CUDA's
  ``max_memory_allocated``; process RSS is not used: the allocator caches and shares pages);
- relative error ``||out - exact|| / ||exact||`` against torch's exact fused attention;
- per backend, the fitted exponent of time and memory against n (least squares on log-log
  from ``--fit-from`` up) and the first length from which it is faster than ``sdpa``.

Before each call the peak memory is estimated (quadratic for ``eager``; otherwise extrapolated
from the backend's own previous lengths) and a call that would not fit in the memory limit
is reported as skipped instead of run. ``--features-sweep`` also reports the Performer's
relative error for several feature counts.

Shape legend: B batch, H heads, n sequence length, Dh head dim.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # silence the profiler's "no GPU" notice

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from polyformer.core import create_attention_backend, parse_backend_spec  # noqa: E402

__all__ = [
    "DEFAULT_BACKENDS",
    "SWEEP_SCALES",
    "Measurement",
    "atomic_write",
    "available_memory_bytes",
    "format_summary",
    "fit_exponent",
    "overtakes",
    "parse_backend_list",
    "peak_allocated_bytes",
    "performer_feature_errors",
    "run_benchmark",
    "save_plot",
    "summarise",
]

DEFAULT_BACKENDS = "eager,sdpa,chunked,linformer,performer,local:256,block_sparse"
SWEEP_SCALES = [1.0, 0.5, 0.25]  # q/k standard deviations of the Performer error sweep


@dataclass
class Measurement:
    """One backend at one length; ``status`` is ``ok``, ``skipped`` or ``unsupported``."""

    backend: str
    n: int
    status: str
    time_s: float | None = None
    peak_bytes: int | None = None
    rel_error: float | None = None
    note: str = ""


def parse_backend_list(text: str) -> list[str]:
    """Split ``"eager,linformer:k=64,share=head,local:256"`` into backend specs.

    A comma starts a new spec unless the next item is ``key=value`` (an option of the spec
    before it).
    """
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if specs and "=" in item and ":" not in item:
            specs[-1] += "," + item
        else:
            specs.append(item)
    for spec in specs:
        parse_backend_spec(spec)  # a clear ValueError for an unknown name or option
    return specs


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo, or total physical memory where that is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def peak_allocated_bytes(fn) -> int:
    """Peak bytes torch allocates while ``fn()`` runs, above the level before it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    level = peak = 0
    for _, nbytes in sorted(events):
        level += nbytes
        peak = max(peak, level)
    return peak


def fit_exponent(ns: list[int], values: list[float], from_n: int = 0) -> float | None:
    """Slope of log(value) against log(n) by least squares over the points with n >= from_n."""
    points = [(math.log(n), math.log(v)) for n, v in zip(ns, values) if n >= from_n and v and v > 0]
    if len(points) < 2:
        points = [(math.log(n), math.log(v)) for n, v in zip(ns, values) if v and v > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else None


def overtakes(rows: list[Measurement], backend: str, baseline: str = "sdpa") -> int | None:
    """First length from which ``backend`` is faster than ``baseline`` at every longer measured length."""
    times = {(r.backend, r.n): r.time_s for r in rows if r.status == "ok"}
    common = sorted(n for (b, n) in times if b == backend and (baseline, n) in times)
    answer = None
    for n in reversed(common):
        if times[(backend, n)] < times[(baseline, n)]:
            answer = n
        else:
            break
    return answer


def _estimate_bytes(spec: str, n: int, heads: int, head_dim: int, backward: bool, history: list[Measurement]) -> int:
    """Predicted peak bytes of one call, from the backend's own earlier lengths where measured."""
    measured = [r for r in history if r.backend == spec and r.status == "ok" and r.peak_bytes]
    if parse_backend_spec(spec)[0] == "eager":
        factor = 6 if backward else 2  # score-sized float32 tensors alive at once (forward: measured)
        return factor * heads * n * n * 4
    if len(measured) >= 2:
        (n0, p0), (n1, p1) = [(r.n, r.peak_bytes) for r in measured[-2:]]
        slope = min(max(math.log(p1 / p0) / math.log(n1 / n0), 1.0), 2.0) if p0 and n1 != n0 else 2.0
        return int(p1 * (n / n1) ** slope)
    if measured:
        return int(measured[-1].peak_bytes * (n / measured[-1].n) ** 2)
    return 16 * heads * n * head_dim * 4


def _inputs(n: int, heads: int, head_dim: int, seed: int, requires_grad: bool) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, n, head_dim, generator=gen) for _ in range(3))  # (B, H, n, Dh)
    return tuple(t.requires_grad_(requires_grad) for t in (q, k, v))


def _call(module, q, k, v, causal: bool, backward: bool) -> torch.Tensor:
    if not backward:
        with torch.no_grad():
            return module(q, k, v, None, causal)
    out = module(q, k, v, None, causal)
    out.backward(torch.ones_like(out))
    for t in (q, k, v):
        t.grad = None  # freed here, not inside the next (possibly profiled) call
    return out.detach()


def _exact(q, k, v, causal: bool) -> torch.Tensor:
    with torch.no_grad():
        return F.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), is_causal=causal)


def measure_case(module, spec: str, n: int, settings: dict, reference: torch.Tensor) -> Measurement:
    """Warm-up, timed repeats and a profiled call of one backend at one length."""
    q, k, v = _inputs(n, settings["heads"], settings["head_dim"], settings["seed"], settings["backward"])
    causal, backward = settings["causal"], settings["backward"]
    start = time.perf_counter()
    try:
        out = _call(module, q, k, v, causal, backward)
    except ValueError as err:
        return Measurement(spec, n, "unsupported", note=str(err).split(";")[0])
    except (MemoryError, RuntimeError) as err:  # the estimate was too low: report, do not crash
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower():
            raise
        return Measurement(spec, n, "skipped", note=f"out of memory: {str(err).splitlines()[0][:120]}")
    warm = time.perf_counter() - start
    repeats = settings["repeats"] if warm < settings["slow_call_s"] else 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _call(module, q, k, v, causal, backward)
        times.append(time.perf_counter() - start)
    peak = peak_allocated_bytes(lambda: _call(module, q, k, v, causal, backward))
    error = float((out.float() - reference).norm() / reference.norm().clamp(min=1e-30))
    return Measurement(spec, n, "ok", statistics.median(times), peak, error)


def run_benchmark(specs: list[str], lengths: list[int], settings: dict, log=print) -> list[Measurement]:
    """Measure every backend at every length (see the module docstring); ``log`` gets progress lines."""
    heads, head_dim = settings["heads"], settings["head_dim"]
    limit = settings["memory_limit"]
    rows: list[Measurement] = []
    modules = {}
    for spec in specs:
        try:
            modules[spec] = create_attention_backend(
                spec, num_heads=heads, head_dim=head_dim, max_len=max(lengths)
            ).eval()
        except ValueError as err:
            rows.extend(Measurement(spec, n, "unsupported", note=str(err)) for n in lengths)
    warm = _inputs(min(lengths), heads, head_dim, settings["seed"], settings["backward"])
    for module in modules.values():  # first calls pay one-off set-up costs: keep them out of the table
        try:
            _call(module, *warm, settings["causal"], settings["backward"])
        except ValueError:
            pass
    for n in sorted(lengths):
        q, k, v = _inputs(n, heads, head_dim, settings["seed"], False)
        reference = _exact(q, k, v, settings["causal"])
        for spec, module in modules.items():
            if any(r.backend == spec and r.status != "ok" for r in rows):
                rows.append(
                    Measurement(spec, n, "skipped", note="skipped after a shorter length failed or was skipped")
                )
                continue
            estimate = _estimate_bytes(spec, n, heads, head_dim, settings["backward"], rows)
            if estimate > limit:
                note = f"would need ~{estimate / 2**30:.1f} GiB > limit {limit / 2**30:.1f} GiB (out of memory)"
                rows.append(Measurement(spec, n, "skipped", note=note))
            else:
                torch.manual_seed(settings["seed"])
                rows.append(measure_case(module, spec, n, settings, reference))
            log(_format_row(rows[-1]))
    return rows


def performer_feature_errors(
    features: list[int], scales: list[float], n: int, heads: int, head_dim: int, causal: bool, seed: int, draws: int = 3
) -> dict[str, dict[str, float]]:
    """Mean relative error of ``performer`` against exact attention, per q/k scale and feature count.

    q and k are N(0, scale^2) (v stays N(0, 1)): the variance of positive random features grows
    like exp(|q|^2 + |k|^2) / sqrt(Dh), so the error depends on the input scale as much as on
    the number of features. Each value is the mean over ``draws`` feature draws.
    """
    table: dict[str, dict[str, float]] = {}
    for scale in scales:
        q, k, v = _inputs(n, heads, head_dim, seed, False)
        q, k = q * scale, k * scale
        reference = _exact(q, k, v, causal)
        row = {}
        for m in features:
            values = []
            for draw in range(draws):
                torch.manual_seed(seed + draw)
                module = create_attention_backend(f"performer:features={m}", num_heads=heads, head_dim=head_dim)
                with torch.no_grad():
                    out = module(q, k, v, None, causal)
                values.append(float((out - reference).norm() / reference.norm()))
            row[str(m)] = statistics.mean(values)
        table[str(scale)] = row
    return table


def summarise(rows: list[Measurement], fit_from: int) -> dict[str, dict]:
    """Per backend: time and memory exponents and the length from which it beats sdpa."""
    summary = {}
    for spec in dict.fromkeys(r.backend for r in rows):
        ok = [r for r in rows if r.backend == spec and r.status == "ok"]
        ns = [r.n for r in ok]
        summary[spec] = {
            "time_exponent": fit_exponent(ns, [r.time_s for r in ok], fit_from),
            "memory_exponent": fit_exponent(ns, [float(r.peak_bytes or 0) for r in ok], fit_from),
            "faster_than_sdpa_from": None if spec == "sdpa" else overtakes(rows, spec),
        }
    return summary


def _format_row(row: Measurement) -> str:
    if row.status != "ok":
        return f"{row.backend:<22} {row.n:>7}  {row.status}: {row.note}"
    return (
        f"{row.backend:<22} {row.n:>7} {row.time_s * 1e3:>11.1f} {row.peak_bytes / 2**20:>11.1f} {row.rel_error:>10.2e}"
    )


def format_summary(summary: dict[str, dict], fit_from: int) -> list[str]:
    lines = [f"{'backend':<22} {'time exp':>9} {'mem exp':>8}  faster than sdpa (fits from n={fit_from})"]
    for spec, info in summary.items():
        te, me, over = info["time_exponent"], info["memory_exponent"], info["faster_than_sdpa_from"]
        te_s = f"{te:.2f}" if te is not None else "-"
        me_s = f"{me:.2f}" if me is not None else "-"
        over_s = "(baseline)" if spec == "sdpa" else (f"from n={over}" if over else "not in the measured range")
        lines.append(f"{spec:<22} {te_s:>9} {me_s:>8}  {over_s}")
    return lines


def atomic_write(path: Path, write) -> None:
    """Write through a temporary name and rename, so no half-written file is left."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_plot(rows: list[Measurement], path: Path, title: str) -> None:
    """Log-log plot of time and peak memory against n, one line per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for spec in dict.fromkeys(r.backend for r in rows):
        ok = [r for r in rows if r.backend == spec and r.status == "ok"]
        if ok:
            ax_t.plot([r.n for r in ok], [r.time_s * 1e3 for r in ok], marker="o", label=spec)
            ax_m.plot([r.n for r in ok], [r.peak_bytes / 2**20 for r in ok], marker="o", label=spec)
    for ax, label in ((ax_t, "time (ms, median)"), (ax_m, "peak allocated (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
