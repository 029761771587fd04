"""A run killed with SIGKILL and resumed ends with the same weights as a run never interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from engine_tiny_run import run, single_thread
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("engine_tiny_run.py")


def _kill_after_first_checkpoint(out: Path, steps: int, dropout: float) -> None:
    command = [
        sys.executable, str(SCRIPT),
        "--out", str(out), "--steps", str(steps), "--sleep", "0.1", "--dropout", str(dropout),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while not (out / "checkpoints" / "latest").exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    steps, dropout = 16, 0.1
    with single_thread():
        baseline_model, _ = run(tmp_path / "baseline", max_steps=steps, dropout=dropout)

    killed = tmp_path / "killed"
    _kill_after_first_checkpoint(killed, steps, dropout)
    done = sorted(p.name for p in (killed / "checkpoints").glob("step-*"))
    assert done and "step-00000016" not in done and not (killed / "model").exists()

    with single_thread():
        resumed_model, result = run(killed, max_steps=steps, dropout=dropout, resume=str(killed))
    assert result.steps == steps
    expected = baseline_model.state_dict()
    for name, value in resumed_model.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0, msg=name)
    saved = load_file(str(killed / "model" / "model.safetensors"))
    torch.testing.assert_close(saved["head.weight"], expected["head.weight"], atol=1e-6, rtol=0)
    steps_logged = [line for line in (killed / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(steps_logged) == steps // 2  # lines of the killed run past its checkpoint were dropped
