"""Two CPU processes under torchrun (gloo), DDP and FSDP, match one process with the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_tiny_run import run, single_thread
from safetensors.torch import load_file

from polyformer.apps.engine import torchrun_command

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


def test_torchrun_command_reexecs_the_package():
    command = torchrun_command(3, ["vision", "train", "embedded"])
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=3" in command
    assert command[-5:] == ["-m", "polyformer.apps", "vision", "train", "embedded"]
