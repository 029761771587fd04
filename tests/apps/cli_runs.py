"""Helpers of the apps tests that run ``polyformer`` in a child process and read a run's ``metrics.jsonl``."""

import json
import subprocess
import sys
from pathlib import Path


def polyformer_process(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m polyformer.apps ARGS`` in a child process (needed for --nproc), output captured as text."""
    return subprocess.run([sys.executable, "-m", "polyformer.apps", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def metrics_lines(run: Path, event: str) -> list[dict]:
    """The run's ``metrics.jsonl`` lines of one event (``train``, ``eval``, ...)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["event"] == event]
