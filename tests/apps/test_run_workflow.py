"""Run folders, resume in place, SIGINT/SIGTERM checkpoints, the automatic checkpoint interval and best_model/."""

import os
import signal

import pytest
import torch
from engine_tiny_run import build_model, run, single_thread
from safetensors.torch import load_file

from polyformer.apps.engine import (
    RunDirectoryError,
    TrainingConfig,
    TrainingInterrupted,
    checkpoint_interval,
    read_metrics,
    run_of_model,
)


def _weights(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _starts(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if r["event"] == "start"]


def test_a_second_run_into_a_used_folder_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    run(out, max_steps=4)
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(RunDirectoryError, match="already holds a training run.*--resume.*--overwrite"):
        run(out, max_steps=4, lr=1e-3)
    assert (out / "metrics.jsonl").read_text() == before


def test_overwrite_replaces_the_run_files_only(tmp_path):
    out = tmp_path / "run"
    run(out, max_steps=8)
    (out / "notes.txt").write_text("mine")
    _, result = run(out, max_steps=4, overwrite=True)
    assert len(_starts(out)) == 1 and result.steps == 4
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000004"]
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_continues_in_the_resumed_folder(tmp_path):
    out = tmp_path / "run"
    run(out, max_steps=4)
    _, result = run(None, max_steps=8, resume=str(out))  # a longer run continued from step 4
    assert result.out_dir == out and result.model_dir == out / "model" and result.steps == 8
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["event"] == "train"]
    assert steps == sorted(steps) and steps[-1] == 8  # one curve, no zig-zag
    assert (out / "checkpoints" / "step-00000008").is_dir()


def test_the_default_folder_is_new_for_every_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, first = run(None, max_steps=2)
    _, second = run(None, max_steps=2)
    assert first.out_dir != second.out_dir
    for result in (first, second):
        assert result.out_dir.resolve().parent == tmp_path / "runs" and result.out_dir.name.startswith("run-")


@pytest.mark.parametrize("number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_that_resumes_to_the_same_weights(tmp_path, number, code):
    def send(step, values):
        if step == 5:
            os.kill(os.getpid(), number)

    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    with single_thread():
        full, _ = run(tmp_path / "full", max_steps=12)
        with pytest.raises(TrainingInterrupted) as stop:
            run(out, max_steps=12, on_step_end=send)
        assert stop.value.step == 5 and stop.value.exit_code == code and stop.value.run_dir == out
        assert stop.value.checkpoint.name == "step-00000005" and (stop.value.checkpoint / "training_state.pt").is_file()
        assert f"--resume {out}" in str(stop.value)
        assert signal.getsignal(signal.SIGINT) is before  # the handlers are restored
        resumed, result = run(None, max_steps=12, resume=str(out))
    assert result.steps == 12
    assert all(torch.equal(a, b) for a, b in zip(_weights(full).values(), _weights(resumed).values()))
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["event"] == "stopped"] == [5]  # then continued


def test_a_stop_request_is_not_swallowed_by_except_exception(tmp_path):
    """A scheduler's SIGTERM ends a script that wraps training in ``except Exception``."""

    def send(step, values):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    swallowed = []
    with single_thread(), pytest.raises(TrainingInterrupted) as stop:
        try:
            run(tmp_path / "run", max_steps=6, on_step_end=send)
        except Exception as error:  # what a user's helper or notebook cell often has
            swallowed.append(error)
    assert not swallowed and stop.value.step == 2 and stop.value.exit_code == 143
    assert not isinstance(stop.value, Exception) and isinstance(stop.value, BaseException)


def test_automatic_checkpoint_interval():
    auto = TrainingConfig(out_dir="x")
    assert checkpoint_interval(auto, steps_per_epoch=6, total_steps=12) == 2  # 10% of the run
    assert checkpoint_interval(auto, steps_per_epoch=6, total_steps=600) == 6  # each epoch
    assert checkpoint_interval(auto, steps_per_epoch=50, total_steps=3) == 1
    assert checkpoint_interval(TrainingConfig(out_dir="x", checkpoint_every=0), 6, 12) == 0
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        TrainingConfig(checkpoint_every=-1)


def test_default_interval_checkpoints_and_validates_a_small_run(tmp_path):
    _, result = run(tmp_path / "run", max_steps=12, checkpoint_every=None, keep_last=20)
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "eval"]
    assert steps == [2, 4, 6, 8, 10, 12]
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 6


def test_the_best_model_is_exported_next_to_the_last(tmp_path):
    out = tmp_path / "run"
    _, result = run(out, max_steps=12, keep_last=1, best_metric=None)  # the task's default: accuracy, max
    assert result.best_model_dir == out / "best_model" and result.best_checkpoint is not None
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["event"] == "eval"]
    best = max(evals, key=lambda r: (r["accuracy"], -r["step"]))
    assert result.best_checkpoint.name == f"step-{best['step']:08d}"
    exported = load_file(str(out / "best_model" / "model.safetensors"))
    saved = load_file(str(result.best_checkpoint / "model.safetensors"))
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    assert run_of_model(out / "best_model") == out and run_of_model(result.best_checkpoint) == out


def test_run_files_are_written_only_into_an_accepted_folder(tmp_path):
    out = tmp_path / "run"
    model = build_model()
    from engine_tiny_run import CLASSES, NoisyBlobs, tiny_config

    from polyformer.apps.engine import ClassificationTask, train

    train(model, ClassificationTask(CLASSES), NoisyBlobs(), tiny_config(out, max_steps=2), run_files={"a.json": "{}"})
    assert (out / "a.json").read_text() == "{}"
    with pytest.raises(RunDirectoryError):
        train(model, ClassificationTask(CLASSES), NoisyBlobs(), tiny_config(out, max_steps=2), run_files={"b": "1"})
    assert not (out / "b").exists()
