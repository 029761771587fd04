"""Two CPU processes under torchrun (gloo), DDP and FSDP, match one process with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_runs import polyformer_process
from engine_tiny_run import run, single_thread
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("engine_tiny_run.py")


def test_torchrun_two_processes_match_one_process(tmp_path):
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(SCRIPT)]
    command += ["--out", str(ddp), "--fsdp-out", str(fsdp), "--steps", "8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    with single_thread():
        single_model, single = run(tmp_path / "single", max_steps=8)
    expected = single_model.state_dict()
    for out in (ddp, fsdp):
        weights = load_file(str(out / "model" / "model.safetensors"))
        for name, value in weights.items():
            torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=0, msg=f"{out.name}: {name}")
    evals = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert evals[-1]["accuracy"] == pytest.approx(single.metrics["accuracy"])  # gathered over both processes


def test_nproc_output_is_the_runs_own(image_folder, tmp_path):
    """--nproc 2: no gloo connection lines or launcher tracebacks, and a failure is said once."""
    args = ["vision", "train", str(image_folder), "--preset", "vit_nano_patch4_32", "--batch-size", "4", "--skip-bad"]
    args += ["--max-steps", "1", "--out", str(tmp_path / "run"), "--nproc", "2", "train.plot=false"]
    done = polyformer_process(*args, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("data: ") and "batch 4 = 2 process(es)" in done.stdout
    assert "Gloo" not in done.stdout + done.stderr and done.stderr == ""
    (tmp_path / "one" / "only").mkdir(parents=True)
    (tmp_path / "one" / "only" / "0.png").write_bytes((image_folder / "red" / "0.png").read_bytes())
    one = ["vision", "train", str(tmp_path / "one"), "--max-steps", "1", "--nproc", "2"]
    failed = polyformer_process(*one, timeout=180)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.splitlines() == [
        f"Error: {tmp_path / 'one'} has a single class (only); classification needs images of at least two classes "
        "(one sub-folder per class)"
    ]


def test_ctrl_c_under_nproc_saves_a_checkpoint_and_says_how_to_resume(image_folder, tmp_path):
    """Ctrl-C reaches the launcher and both processes (a terminal signals the whole group)."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "polyformer.apps", "vision", "train", str(image_folder), "--skip-bad"]
    command += ["--preset", "vit_nano_patch4_32", "--batch-size", "4", "--max-steps", "100000", "--out", str(out)]
    command += ["--nproc", "2", "train.plot=false", "train.checkpoint_every=1000"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    log = out / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and '"train"' in log.read_text()):  # training has started
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    (line,) = stderr.splitlines()
    assert line.startswith("interrupted by SIGINT after step ") and f"Continue with --resume {out}" in line
    step = int(line.split("after step ")[1].split(";")[0])
    assert (out / "checkpoints" / f"step-{step:08d}" / "training_state.pt").is_file()
