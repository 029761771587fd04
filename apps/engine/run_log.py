"""What a run reports: ``metrics.jsonl`` lines, a progress bar or plain progress lines, and a PNG
of the loss and metric curves at the end.

Only the main process (rank 0) writes or prints; the others get quiet instances.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "ProgressReporter", "plot_training_curves", "read_metrics"]


class MetricsLog:
    """Append-only JSON-lines log of a run; one object per line with an ``event`` field.

    Args:
        path: the ``metrics.jsonl`` file; None writes nothing (non-main processes).
    """

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        """Append one line ``{"event": event, "time": ..., **fields}``."""
        if self.path is None:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=_json_default) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after ``step`` (written by a run that was killed before its next checkpoint)."""
        if self.path is None or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if _line_step(line) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _line_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", -1))
    except (json.JSONDecodeError, AttributeError):
        return math.inf  # a torn last line from a killed run: drop it


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class ProgressReporter:
    """A tqdm bar on a terminal, plain lines otherwise, nothing when quiet.

    Args:
        total_steps: optimizer steps of the whole run.
        start_step: steps already done (when resuming).
        mode: "bar", "lines" or "quiet"; None picks "bar" when stdout is a terminal.
        echo: where plain lines go.
    """

    def __init__(
        self, total_steps: int, start_step: int = 0, mode: str | None = None, echo: Callable[[str], None] = print
    ):
        self.mode = mode or ("bar" if sys.stdout.isatty() else "lines")
        self.total_steps, self.echo, self.bar = total_steps, echo, None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def advance(self) -> None:
        """One more optimizer step (moves the bar)."""
        if self.bar is not None:
            self.bar.update(1)

    def report(self, step: int, values: dict[str, float]) -> None:
        """Training values after ``step``: the bar's postfix, or one plain line."""
        if self.bar is not None:
            self.bar.set_postfix({name: _short(value) for name, value in values.items()})
        elif self.mode == "lines":
            text = "  ".join(f"{name} {_short(value)}" for name, value in values.items())
            self.echo(f"step {step}/{self.total_steps}  {text}")

    def message(self, text: str) -> None:
        """A line that is not a training step (evaluation results, checkpoint paths)."""
        if self.bar is not None:
            self.bar.write(text)
        elif self.mode == "lines":
            self.echo(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _short(value: float) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def plot_training_curves(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot training loss and every scalar validation metric against the step into one PNG.

    Returns:
        The PNG path, or None when the log holds no training lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    if not train:
        return None
    skip = ("step", "time", "epoch", "loss")
    names = sorted({k for r in evals for k, v in r.items() if isinstance(v, int | float) and k not in skip})
    figure, axes = plt.subplots(1, 1 + len(names), figsize=(4.5 * (1 + len(names)), 3.5), squeeze=False)
    axes[0][0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if any("loss" in r for r in evals):
        axes[0][0].plot(
            [r["step"] for r in evals if "loss" in r],
            [r["loss"] for r in evals if "loss" in r],
            "o-",
            label="validation",
        )
    axes[0][0].set(title="loss", xlabel="step")
    axes[0][0].legend()
    for axis, name in zip(axes[0][1:], names):
        points = [(r["step"], r[name]) for r in evals if name in r]
        axis.plot([p[0] for p in points], [p[1] for p in points], "o-")
        axis.set(title=f"validation {name}", xlabel="step")
    figure.tight_layout()
    png_path = Path(png_path)
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path
