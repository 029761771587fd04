"""The training engine in one process: optimizer groups, schedule, sampler, EMA, checkpoints, logging, NaN stop."""

import json

import pytest
import torch
from engine_tiny_run import CLASSES, run
from safetensors.torch import load_file
from torch import nn

from polyformer.apps.engine import (
    ClassificationTask,
    MetricsLog,
    NonFiniteLossError,
    ProgressReporter,
    ResumableBatchSampler,
    TrainingConfig,
    decay_parameter_groups,
    load_training_state,
    resolve_checkpoint,
    resolve_precision,
    warmup_cosine_factor,
)
from polyformer.apps.hardware import bf16_is_fast


def weights(directory):
    return load_file(str(directory / "model.safetensors"))


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


class _Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)


def test_weight_decay_skips_norms_biases_embeddings_and_tokens():
    model = _Tokens()
    groups = {g["group"]: g for g in decay_parameter_groups(model, 0.1)}
    assert [p is model.proj.weight for p in groups["decay"]["params"]] == [True]
    assert groups["no_decay"]["weight_decay"] == 0.0 and len(groups["no_decay"]["params"]) == 6


def test_warmup_then_cosine_to_the_floor():
    factors = [warmup_cosine_factor(s, warmup_steps=4, total_steps=20, min_ratio=0.1) for s in range(21)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0) and factors[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


def test_sampler_ranks_and_accumulation_cover_each_global_batch():
    single = list(ResumableBatchSampler(40, global_batch=8, seed=3))
    shards = [list(ResumableBatchSampler(40, 8, grad_accum=2, rank=r, world_size=2, seed=3)) for r in range(2)]
    for step, batch in enumerate(single):
        pieces = [shards[r][2 * step + m] for m in range(2) for r in range(2)]
        assert sorted(sum(pieces, [])) == sorted(batch) and all(len(p) == 2 for p in pieces)
    resumed = ResumableBatchSampler(40, 8, seed=3)
    resumed.set_position(0, 3)
    assert list(resumed) == single[3:]
    resumed.set_position(1, 0)
    assert list(resumed) != single


def test_sampler_rejects_batches_that_do_not_split():
    with pytest.raises(ValueError, match="divisible"):
        ResumableBatchSampler(40, 6, grad_accum=4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ResumableBatchSampler(4, 8)


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="precision"):
        TrainingConfig(precision="fp16")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainingConfig(ema_decay=1.5)


def test_precision_auto_follows_the_hardware():
    expected = "bf16" if bf16_is_fast("cpu") else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_run_writes_checkpoints_best_and_logs(tmp_path):
    model, result = run(tmp_path, keep_last=1, plot=True)
    assert result.steps == 12 and result.metrics["accuracy"] > 0.5
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("step-*"))] in (
        ["step-00000012"],
        [result.best_checkpoint.name, "step-00000012"],
    )
    assert resolve_checkpoint(tmp_path) == result.last_checkpoint
    state = load_training_state(result.last_checkpoint)  # weights_only=True
    assert state["step"] == 12 and state["epoch"] == 2 and state["epoch_step"] == 0
    summary = json.loads((result.best_checkpoint / "summary.json").read_text())
    assert summary["best"]["step"] == int(result.best_checkpoint.name.split("-")[1])
    assert_same_weights(weights(result.model_dir), {k: v for k, v in model.state_dict().items()})
    events = [json.loads(line)["event"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and events.count("train") == 6 and events.count("eval") == 3
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    run(tmp_path / "a", max_steps=6)
    run(tmp_path / "b", max_steps=6, grad_accum=4)
    assert_same_weights(weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model"))


def test_ema_weights_are_exported(tmp_path):
    model, result = run(tmp_path, max_steps=6, ema_decay=0.5)
    assert (result.last_checkpoint / "ema" / "model.safetensors").is_file()
    exported, raw = weights(result.model_dir), weights(result.last_checkpoint)
    assert_same_weights(exported, weights(result.last_checkpoint / "ema"))
    assert not torch.equal(exported["head.weight"], raw["head.weight"])


def test_bf16_autocast_trains(tmp_path):
    _, result = run(tmp_path, max_steps=4, precision="bf16", checkpoint_every=None)
    assert result.metrics["loss"] < 5


class _NanAtStep(ClassificationTask):
    def __init__(self, step):
        super().__init__(CLASSES)
        self.step, self.calls = step, 0

    def loss(self, model, batch):
        self.calls += 1
        loss = super().loss(model, batch)
        return loss * float("nan") if self.calls == self.step else loss


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="at step 7") as caught:
        run(tmp_path, task=_NanAtStep(7), max_steps=12)
    assert caught.value.step == 7 and caught.value.last_checkpoint.name == "step-00000004"
    assert (tmp_path / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["event"] == "stopped"


def test_progress_plain_lines_and_quiet():
    lines = []
    reporter = ProgressReporter(10, mode="lines", echo=lines.append)
    reporter.report(5, {"loss": 0.5})
    reporter.message("eval")
    quiet = ProgressReporter(10, mode="quiet", echo=lines.append)
    quiet.report(5, {"loss": 0.5})
    quiet.message("x")
    assert lines == ["step 5/10  loss 0.5", "eval"]


def test_metrics_log_drops_lines_after_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(5):
        log.write("train", step=step)
    with (tmp_path / "m.jsonl").open("a") as handle:
        handle.write('{"event": "tr')  # torn line of a killed run
    log.truncate_after(2)
    assert [json.loads(line)["step"] for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [0, 1, 2]
