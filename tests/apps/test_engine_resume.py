"""A run killed with SIGKILL and resumed ends with the same weights as a run never interrupted."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_tiny_run import CLASSES, run, single_thread
from safetensors.torch import load_file

from polyformer.apps.engine import CheckpointDamagedError, ClassificationTask

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


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_truncated_newest_checkpoint_is_set_aside_and_resume_uses_the_one_before(tmp_path):
    steps = 16
    with single_thread():
        baseline_model, _ = run(tmp_path / "baseline", max_steps=steps, keep_last=10)
    # The state a run killed after its step-8 checkpoint leaves, with that checkpoint then damaged in a copy.
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "baseline", crashed, symlinks=True)
    for name in ("step-00000012", "step-00000016"):
        shutil.rmtree(crashed / "checkpoints" / name)
    shutil.rmtree(crashed / "model")
    assert (crashed / "checkpoints" / "step-00000008" / "checksums.json").is_file()
    _truncate(crashed / "checkpoints" / "step-00000008" / "model.safetensors")

    lines = []
    with single_thread():
        resumed_model, result = run(crashed, max_steps=steps, keep_last=10, resume=str(crashed), echo=lines.append)
    assert result.steps == steps
    assert any("step-00000008 is damaged (" in line and "truncated: expected" in line for line in lines), lines
    assert any("resuming from" in line and "step-00000004" in line for line in lines), lines
    assert (crashed / "checkpoints" / "damaged-step-00000008").is_dir()
    expected = baseline_model.state_dict()
    for name, value in resumed_model.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0, msg=name)
    events = [json.loads(line) for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    [damaged] = [event for event in events if event["event"] == "damaged_checkpoint"]
    assert damaged["step"] == 4 and damaged["checkpoint"].endswith("step-00000008")


def test_resume_with_every_checkpoint_damaged_fails_clearly_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    with single_thread():
        run(run_dir, max_steps=8)
    for checkpoint in (run_dir / "checkpoints").glob("step-*"):
        _truncate(checkpoint / "training_state.pt")
    before = _files(run_dir)
    with pytest.raises(CheckpointDamagedError, match="all 2 checkpoints damaged") as caught:
        run(run_dir, max_steps=12, resume=str(run_dir))
    assert "training_state.pt: truncated: expected" in str(caught.value)
    assert _files(run_dir) == before
    with pytest.raises(CheckpointDamagedError, match="resume from the run directory"):
        run(run_dir, max_steps=12, resume=str(run_dir / "checkpoints" / "step-00000008"))


class _StartRecorder(ClassificationTask):
    """Remembers the step the engine starts it at."""

    def on_start(self, step: int) -> None:
        self.started_at = step


def test_a_task_is_told_the_step_a_resumed_run_starts_at(tmp_path):
    first, again = _StartRecorder(CLASSES), _StartRecorder(CLASSES)
    run(tmp_path / "run", max_steps=8, task=first)
    run(tmp_path / "run", max_steps=12, task=again, resume=str(tmp_path / "run"))
    assert first.started_at == 0 and again.started_at == 8
